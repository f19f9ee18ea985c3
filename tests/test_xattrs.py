"""A file replaced by atomic_write() keeps its extended attributes: user.*,
POSIX ACLs, security.* and, for root, trusted.* (Linux)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import as_nobody, inject_at_call_on, write

from atomicswap import atomic_write, write_text

pytestmark = pytest.mark.skipif(not hasattr(os, "setxattr"), reason="extended attributes are Linux's")


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory that other users may enter (tmp_path is private to its owner)."""
    top = Path(tempfile.mkdtemp())
    os.chmod(top, 0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top)


def test_user_attributes_are_kept(tmp_path: Path) -> None:
    target = write(tmp_path / "f", "old")
    os.setxattr(target, "user.origin", b"upstream")
    os.setxattr(target, "user.checksum", b"\x00\xff")

    write_text(target, "new")

    assert os.getxattr(target, "user.origin") == b"upstream"
    assert os.getxattr(target, "user.checksum") == b"\x00\xff"


@pytest.mark.skipif(os.geteuid() != 0, reason="trusted.* and security.* are root's to set")
def test_trusted_and_security_attributes_are_kept_for_root(tmp_path: Path) -> None:
    target = write(tmp_path / "f", "old")
    os.setxattr(target, "trusted.tag", b"t")
    os.setxattr(target, "security.tag", b"s")

    with atomic_write(target, "a") as f:
        f.write("+")

    assert (os.getxattr(target, "trusted.tag"), os.getxattr(target, "security.tag")) == (b"t", b"s")


@pytest.mark.skipif(shutil.which("setfacl") is None, reason="setfacl is not installed (apt-get install acl)")
@pytest.mark.skipif(os.geteuid() != 0, reason="needs another user to grant access to")
def test_a_user_granted_read_by_an_acl_can_still_read_after_a_replace(shared: Path) -> None:
    """Losing the ACL would silently take the access away: the mode alone
    (0o600, owner root) gives uid 65534 nothing."""
    target = write(shared / "f", "old")
    target.chmod(0o600)
    subprocess.run(["setfacl", "-m", "u:65534:r", str(target)], check=True)

    write_text(target, "new")

    assert as_nobody(lambda: {"read": target.read_text()}) == {"read": "new"}
    acl = subprocess.run(["getfacl", "-c", str(target)], capture_output=True, text=True, check=True).stdout
    assert "user:nobody:r--" in acl.splitlines() or "user:65534:r--" in acl.splitlines()
    assert target.stat().st_mode & 0o777 == 0o640  # the ACL's mask is the group bits


@pytest.mark.skipif(os.geteuid() != 0, reason="needs another user to write as")
def test_a_writer_who_may_not_set_an_attribute_still_writes(shared: Path) -> None:
    """trusted.* is root's: uid 65534 can neither read nor set it, and the
    write goes on without it, as it goes on without the owner it cannot give."""
    target = write(shared / "f", "old")
    os.setxattr(target, "trusted.tag", b"t")
    os.setxattr(target, "user.tag", b"u")
    os.chown(shared, 65534, 65534)
    os.chown(target, 65534, 65534)

    def rewrite() -> dict[str, object]:
        write_text(target, "new")
        return {"content": target.read_text(), "user.tag": os.getxattr(target, "user.tag").decode()}

    assert as_nobody(rewrite) == {"content": "new", "user.tag": "u"}
    assert "trusted.tag" not in os.listxattr(target)


def test_a_failure_to_read_the_attributes_fails_the_write_rather_than_drop_them(tmp_path: Path) -> None:
    """EIO from llistxattr is not a refusal: writing on would silently lose the
    ACL or the attributes, so the write fails and the old file stays."""
    target = write(tmp_path / "f", "old")
    os.setxattr(target, "user.origin", b"kept")
    code = (
        "import atomicswap\ntry:\n"
        "    with atomicswap.atomic_write('f', 'a') as f:\n        f.write('new')\n"
        "except OSError as e:\n    print(e.errno, repr(e.filename), e)\n"
    )

    result = inject_at_call_on(code, "llistxattr", "error=EIO", r'"f"', cwd=tmp_path)

    assert result.stdout.startswith("5 'f' "), result.stderr
    assert "nothing was changed" in result.stdout
    assert target.read_text() == "old"
    assert os.getxattr(target, "user.origin") == b"kept"
    assert os.listdir(tmp_path) == ["f"]


@pytest.mark.skipif(shutil.which("setfacl") is None, reason="setfacl is not installed (apt-get install acl)")
def test_a_default_acl_of_the_directory_grants_nothing_the_old_file_did_not(shared: Path) -> None:
    """The new file inherits the directory's default ACL, as any new file
    would; replacing one that had no ACL must not give that access."""
    target = write(shared / "f", "old")
    target.chmod(0o640)
    subprocess.run(["setfacl", "-d", "-m", "u:65534:r", str(shared)], check=True)

    write_text(target, "new")

    assert "system.posix_acl_access" not in os.listxattr(target)
    assert target.stat().st_mode & 0o777 == 0o640
