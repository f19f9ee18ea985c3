"""The jobs among real mounts (root only): a filesystem mounted inside a tree
being replaced, the EXDEV of overlayfs, of bind mounts and of two filesystems,
and a FUSE filesystem (bindfs) whose server supports no rename flags.

Each test mounts what it needs under its tmp_path through the `mount` fixture.
At teardown, whether the test passed or not, every mount point found under
tmp_path in /proc/self/mountinfo is unmounted, deepest first, lazily if it is
busy: also one that a faulty job carried elsewhere under tmp_path by
exchanging the directory above it. The test without /proc mounts inside a
private mount namespace of its own (unshare), which takes its mounts with it
when its one process exits.

Tools: mount and umount, unshare (util-linux), strace, bindfs (Debian's
bindfs, which runs on fuse3), and the kernel's overlay, tmpfs and fuse. A test
skips, saying which, where one is missing or mounting is not possible; CI
installs them all, so that nothing skips there.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import inject_at_call_on, run_python, run_under_strace, write

import atomicswap
from atomicswap import atomic_dir, atomic_write, rename_noreplace, replace, swap

# Where each tool comes from on Debian, for the skip message.
PACKAGES = {
    "mount": "mount",
    "umount": "mount",
    "unshare": "util-linux",
    "bindfs": "bindfs and fuse3",
}

Mount = Callable[..., None]


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (apt-get install {PACKAGES.get(tool, tool)})")
    return path


def need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem needs root")


def mount_points_under(top: Path) -> list[str]:
    """The mount points strictly inside *top*, in /proc/self/mountinfo's order
    (a mount comes after the one it is mounted on)."""
    prefix = os.path.realpath(top) + "/"
    with open("/proc/self/mountinfo", "rb") as f:
        table = f.read()
    # The kernel writes a space in a path as \040, a backslash as \134, ...
    points = (
        os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), line.split(b" ")[4]))
        for line in table.splitlines()
    )
    return [point for point in points if point.startswith(prefix)]


def unmount_everything_under(top: Path) -> None:
    for point in reversed(mount_points_under(top)):
        # A descriptor that a failing test left open keeps a plain umount busy.
        if subprocess.run(["umount", point], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", point], check=True, capture_output=True, timeout=30)


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[Mount]:
    """mount(*command) runs a command that mounts a filesystem under tmp_path,
    skipping the test if it cannot; all is unmounted at the end."""
    need_root()
    need("umount")

    def run(*command: str) -> None:
        need(command[0])
        # A FUSE daemon starting on a loaded machine (CI runs two suites at once) may take a while.
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            pytest.skip(f"cannot mount here: {shlex.join(command)}: {result.stderr.strip()}")

    try:
        yield run
    finally:
        unmount_everything_under(tmp_path)


# ---- A filesystem mounted inside a tree that a job would replace -----------------


@pytest.fixture(params=["tmpfs", "bind mount"])
def site(request: pytest.FixtureRequest, tmp_path: Path, mount: Mount) -> Path:
    """tmp_path/site, holding index and, at site/uploads, a mounted filesystem
    that holds keep: a tmpfs, or a bind mount of tmp_path/volume, a directory of
    the very filesystem site is on (so that no device number tells it apart)."""
    site = tmp_path / "site"
    (site / "uploads").mkdir(parents=True)
    write(site / "index", "old")
    if request.param == "tmpfs":
        mount("mount", "-t", "tmpfs", "uploads", str(site / "uploads"))
    else:
        (tmp_path / "volume").mkdir()
        mount("mount", "--bind", str(tmp_path / "volume"), str(site / "uploads"))
    write(site / "uploads" / "keep", "theirs")
    return site


def assert_site_untouched(site: Path) -> None:
    assert (site / "index").read_text() == "old"
    assert mount_points_under(site) == [os.path.realpath(site / "uploads")]
    assert os.listdir(site / "uploads") == ["keep"]
    assert (site / "uploads" / "keep").read_text() == "theirs"


def test_replace_refuses_when_a_mount_is_inside_dst(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "new").mkdir()
    write(tmp_path / "new" / "index", "new")
    monkeypatch.chdir(tmp_path)

    with pytest.raises(OSError) as raised:
        replace("new", "site")

    assert_site_untouched(site)
    assert os.listdir(tmp_path / "new") == ["index"]
    assert raised.value.errno == errno.EBUSY
    assert raised.value.filename == "site"
    assert repr(os.path.realpath(site / "uploads")) in str(raised.value)


def test_replace_that_cannot_read_the_mount_table_moves_nothing(site: Path, tmp_path: Path) -> None:
    """An EIO on the read of /proc/self/mountinfo (injected by strace) is not
    the absence of /proc: the check could not be made, so nothing moves and
    the error says so, rather than exchange and carry the mount away."""
    (tmp_path / "new").mkdir()
    write(tmp_path / "new" / "index", "new")
    code = """
import atomicswap
try:
    atomicswap.replace("new", "site")
except OSError as e:
    print(e.errno, e.filename, e.filename2, e)
"""
    result = inject_at_call_on(code, "read", "error=EIO", r"mountinfo>", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{errno.EIO} new site "), result.stdout
    assert "mount table" in result.stdout and "nothing was changed" in result.stdout
    assert_site_untouched(site)
    assert os.listdir(tmp_path / "new") == ["index"]


def test_atomic_dir_refuses_when_a_mount_is_inside_path(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path))

    with pytest.raises(OSError) as raised, atomic_dir("site") as staging:
        write(staging / "index", "new")

    assert_site_untouched(site)
    assert sorted(os.listdir(tmp_path)) == before  # no staging directory left
    assert raised.value.errno == errno.EBUSY
    assert raised.value.filename == "site"
    assert repr(os.path.realpath(site / "uploads")) in str(raised.value)


# In a private mount namespace: a tmpfs at site/uploads, then /proc detached,
# then Python ($0 "$@"). Status 77: the namespace could not be set up.
WITHOUT_PROC = """
mount -t tmpfs uploads site/uploads && printf theirs > site/uploads/keep && umount -l /proc || exit 77
exec "$0" "$@"
"""

REPLACE_SITE = """
import errno, json, os, atomicswap
report = {"proc": os.path.exists("/proc/self/mountinfo")}
try:
    atomicswap.replace("new", "site")
except OSError as e:
    report.update(errno=errno.errorcode[e.errno], message=str(e))
try:
    with open("new/uploads/keep") as f:  # where an exchange put the old tree
        report["keep"] = f.read()
except OSError as e:
    report["keep"] = repr(e)
report["site"] = sorted(os.listdir("site"))
print(json.dumps(report))
"""


def test_replace_without_proc_never_removes_what_is_on_a_filesystem_mounted_inside_dst(
    tmp_path: Path,
) -> None:
    """Without /proc the mount cannot be seen beforehand: replace() exchanges,
    then removes the old tree, now at src, without entering the other device,
    and raises EBUSY saying that the new content is in place and where the old
    is left."""
    need_root()
    unshare = need("unshare")
    (tmp_path / "site" / "uploads").mkdir(parents=True)
    write(tmp_path / "site" / "index", "old")
    (tmp_path / "new").mkdir()
    write(tmp_path / "new" / "index", "new")

    result = run_python(
        REPLACE_SITE,
        cwd=tmp_path,
        prefix=(unshare, "--mount", "--propagation", "private", "sh", "-c", WITHOUT_PROC),
    )

    if result.returncode == 77:
        pytest.skip(f"cannot mount a tmpfs and detach /proc in a mount namespace: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["proc"] is False
    assert report["keep"] == "theirs"
    assert report["errno"] == "EBUSY"
    assert "the new content is in place, but its old content is left at 'new'" in report["message"]
    assert report["site"] == ["index"]
    assert (tmp_path / "site" / "index").read_text() == "new"


# In a private mount namespace: tmp_path/important bound at site/cache (the
# same filesystem, so the same st_dev), then /proc detached, then Python.
BIND_WITHOUT_PROC = """
mount --bind important site/cache && umount -l /proc || exit 77
exec "$0" "$@"
"""


def test_replace_without_proc_never_enters_a_bind_mount_of_the_same_filesystem_inside_dst(
    tmp_path: Path,
) -> None:
    """No device number tells the bind mount apart and no mountinfo lists it:
    the removal of the old tree must still stop at it, by its mount id."""
    need_root()
    unshare = need("unshare")
    (tmp_path / "important").mkdir()
    write(tmp_path / "important" / "thesis.tex", "years of work")
    (tmp_path / "site" / "cache").mkdir(parents=True)
    write(tmp_path / "site" / "index", "old")
    (tmp_path / "new").mkdir()
    write(tmp_path / "new" / "index", "new")

    result = run_python(
        REPLACE_SITE.replace("new/uploads/keep", "new/cache/thesis.tex"),
        cwd=tmp_path,
        prefix=(unshare, "--mount", "--propagation", "private", "sh", "-c", BIND_WITHOUT_PROC),
    )

    if result.returncode == 77:
        pytest.skip(f"cannot bind mount and detach /proc in a mount namespace: {result.stderr.strip()}")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["proc"] is False
    assert report["keep"] == "years of work"
    assert report["errno"] == "EBUSY"
    assert "the new content is in place, but its old content is left at 'new'" in report["message"]
    assert os.listdir(tmp_path / "important") == ["thesis.tex"]
    assert (tmp_path / "important" / "thesis.tex").read_text() == "years of work"
    assert (tmp_path / "site" / "index").read_text() == "new"


def test_replace_refuses_a_mount_inside_dst_reached_through_a_bind_mount_of_its_parent(
    tmp_path: Path, mount: Mount
) -> None:
    """srv/site/uploads is a tmpfs; alias is a bind mount of srv made before
    it (private, so the tmpfs is not under alias/site/uploads): replace()
    through alias must see it all the same, and refuse before anything moves."""
    srv, alias = tmp_path / "srv", tmp_path / "alias"
    (srv / "site" / "uploads").mkdir(parents=True)
    write(srv / "site" / "index", "old")
    alias.mkdir()
    mount("mount", "--bind", str(srv), str(alias))
    mount("mount", "--make-private", str(alias))
    mount("mount", "-t", "tmpfs", "uploads", str(srv / "site" / "uploads"))
    write(srv / "site" / "uploads" / "user-data", "precious")
    (alias / "new").mkdir()
    write(alias / "new" / "index", "new")

    with pytest.raises(OSError) as raised:
        replace(alias / "new", alias / "site")

    assert raised.value.errno == errno.EBUSY
    assert raised.value.filename == str(alias / "site")
    assert (srv / "site" / "index").read_text() == "old"
    assert os.path.realpath(srv / "site" / "uploads") in mount_points_under(srv / "site")
    assert (srv / "site" / "uploads" / "user-data").read_text() == "precious"
    assert os.listdir(srv / "new") == ["index"]


@pytest.fixture
def btrfs(tmp_path: Path, mount: Mount) -> Iterator[Path]:
    """A btrfs filesystem at tmp_path/btrfs, on a loop device over a sparse
    image in /dev/shm; umount frees the loop device (autoclear), and the image
    is removed."""
    need("mkfs.btrfs")
    need("btrfs")
    fd, image = tempfile.mkstemp(suffix=".btrfs", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
    os.close(fd)
    try:
        os.truncate(image, 256 << 20)
        subprocess.run(["mkfs.btrfs", "-q", "-f", image], check=True, capture_output=True, timeout=60)
        (tmp_path / "btrfs").mkdir()
        mount("mount", "-o", "loop", image, str(tmp_path / "btrfs"))
        yield tmp_path / "btrfs"
    finally:
        unmount_everything_under(tmp_path)
        os.unlink(image)


def test_a_btrfs_subvolume_inside_the_old_tree_is_removed_with_it(btrfs: Path) -> None:
    """A subvolume has a device number of its own but is no mount: like rm -r,
    the removal goes into it and removes it."""
    (btrfs / "site").mkdir()
    create = ["btrfs", "-q", "subvolume", "create", str(btrfs / "site" / "vol")]
    subprocess.run(create, check=True, capture_output=True, timeout=30)
    write(btrfs / "site" / "vol" / "f", "old")
    assert os.stat(btrfs / "site" / "vol").st_dev != os.stat(btrfs / "site").st_dev

    with atomic_dir(btrfs / "site") as staging:
        write(staging / "index", "new")

    assert sorted(os.listdir(btrfs)) == ["site"]
    assert os.listdir(btrfs / "site") == ["index"]


# ---- EXDEV, also within one filesystem, and what its message says -----------------


@pytest.fixture
def overlay(tmp_path: Path, mount: Mount) -> Path:
    """An overlayfs at tmp_path/merged: lower-dir (holding entry) comes from
    its lower layer, upper-dir is made in its upper layer. redirect_dir=off,
    the kernel's default unless built with CONFIG_OVERLAY_FS_REDIRECT_DIR,
    is given so that the test does not depend on that."""
    layers = tmp_path / "layers"
    for layer in ("lower/lower-dir", "upper", "work"):
        (layers / layer).mkdir(parents=True)
    write(layers / "lower" / "lower-dir" / "entry", "lower")
    merged = tmp_path / "merged"
    merged.mkdir()
    options = f"lowerdir={layers / 'lower'},upperdir={layers / 'upper'},workdir={layers / 'work'}"
    mount("mount", "-t", "overlay", "overlay", "-o", f"{options},redirect_dir=off", str(merged))
    (merged / "upper-dir").mkdir()
    write(merged / "upper-dir" / "entry", "upper")
    return merged


def publish_over(path: Path) -> None:
    with atomic_dir(path) as staging:
        write(staging / "entry", "new")


# Every way a job moves a directory from the lower layer; the kernel answers
# EXDEV to each (to the plain rename, and to RENAME_EXCHANGE and RENAME_NOREPLACE).
LOWER_DIR_MOVES: dict[str, Callable[[Path], None]] = {
    "swap": lambda merged: swap(merged / "lower-dir", merged / "upper-dir"),
    "replace over it": lambda merged: replace(merged / "upper-dir", merged / "lower-dir"),
    "replace it (a rename)": lambda merged: replace(merged / "lower-dir", merged / "moved"),
    "rename_noreplace": lambda merged: rename_noreplace(merged / "lower-dir", merged / "moved"),
    "atomic_dir over it": lambda merged: publish_over(merged / "lower-dir"),
}


@pytest.mark.parametrize("move", LOWER_DIR_MOVES.values(), ids=LOWER_DIR_MOVES.keys())
def test_moving_a_lower_layer_directory_on_overlayfs_raises_exdev_naming_overlayfs(
    overlay: Path, move: Callable[[Path], None]
) -> None:
    with pytest.raises(OSError) as raised:
        move(overlay)

    assert raised.value.errno == errno.EXDEV
    assert "different mounts" in str(raised.value)
    assert "overlayfs" in str(raised.value)
    assert sorted(os.listdir(overlay)) == ["lower-dir", "upper-dir"]
    assert (overlay / "lower-dir" / "entry").read_text() == "lower"
    assert (overlay / "upper-dir" / "entry").read_text() == "upper"


# Moves of the file tmp_path/a into another mount's directory.
FILE_MOVES: dict[str, Callable[[Path, Path], None]] = {
    "swap": lambda a, there: swap(a, there / "b"),
    "replace": lambda a, there: replace(a, there / "b"),
    "rename_noreplace": lambda a, there: rename_noreplace(a, there / "new"),
}


@pytest.fixture
def shm(tmp_path: Path) -> Iterator[Path]:
    """A fresh directory in /dev/shm, a tmpfs: another filesystem than tmp_path's."""
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    if os.stat("/dev/shm").st_dev == tmp_path.stat().st_dev:
        pytest.skip("/dev/shm is on the filesystem of the tests' temporary directory")
    with tempfile.TemporaryDirectory(dir="/dev/shm") as directory:
        yield Path(directory)


@pytest.mark.parametrize("move", FILE_MOVES.values(), ids=FILE_MOVES.keys())
def test_exdev_between_two_filesystems_says_different_mounts(
    tmp_path: Path, shm: Path, move: Callable[[Path, Path], None]
) -> None:
    a, b = write(tmp_path / "a", "alpha"), write(shm / "b", "bravo")

    with pytest.raises(OSError) as raised:
        move(a, shm)

    assert raised.value.errno == errno.EXDEV
    assert "different mounts" in str(raised.value)
    assert (a.read_text(), b.read_text()) == ("alpha", "bravo")


@pytest.mark.parametrize("move", FILE_MOVES.values(), ids=FILE_MOVES.keys())
def test_exdev_between_two_bind_mounts_of_one_filesystem_says_different_mounts(
    tmp_path: Path, mount: Mount, move: Callable[[Path, Path], None]
) -> None:
    (tmp_path / "volume").mkdir()
    (tmp_path / "mounted").mkdir()
    mount("mount", "--bind", str(tmp_path / "volume"), str(tmp_path / "mounted"))
    a, b = write(tmp_path / "a", "alpha"), write(tmp_path / "mounted" / "b", "bravo")
    assert a.stat().st_dev == b.stat().st_dev  # one filesystem

    with pytest.raises(OSError) as raised:
        move(a, tmp_path / "mounted")

    assert raised.value.errno == errno.EXDEV
    assert "different mounts" in str(raised.value)
    assert (a.read_text(), b.read_text()) == ("alpha", "bravo")


def test_einval_from_a_plain_rename_does_not_say_a_directory_would_move_inside_itself(
    tmp_path: Path,
) -> None:
    write(tmp_path / "a", "alpha"), write(tmp_path / "b", "bravo")

    result = run_under_strace(
        "import errno, atomicswap\n"
        "try:\n"
        "    atomicswap.replace('a', 'b')\n"
        "except OSError as e:\n"
        "    print(errno.errorcode[e.errno], e)\n",
        *("-e", "trace=rename,renameat,renameat2", "-e", "inject=rename,renameat,renameat2:error=EINVAL"),
        cwd=tmp_path,
    )

    assert result.stdout.startswith("EINVAL "), result.stderr
    assert "inside itself" not in result.stdout
    assert ((tmp_path / "a").read_text(), (tmp_path / "b").read_text()) == ("alpha", "bravo")


# ---- FUSE without rename flags (bindfs): the fallbacks, on CPython and PyPy -------

RENAME_NOREPLACE = 1  # <linux/fs.h>


def noreplace_answer(directory: Path) -> int:
    """What renameat2(RENAME_NOREPLACE) of a file to a free name in *directory*
    gives: 0, or the errno."""
    import ctypes

    renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    src, dst = directory / "probe", directory / "probed"
    write(src, "")
    try:
        failed = renameat2(-100, os.fsencode(src), -100, os.fsencode(dst), RENAME_NOREPLACE)  # AT_FDCWD
        return ctypes.get_errno() if failed else 0
    finally:
        for name in (src, dst):
            if os.path.lexists(name):
                os.unlink(name)


@pytest.fixture
def fuse(tmp_path: Path, mount: Mount) -> Path:
    """bindfs mirroring tmp_path/backing at tmp_path/fuse: a FUSE filesystem
    that answers EINVAL to every rename flag, as NFS and 9p do. Skips the test
    where this bindfs supports RENAME_NOREPLACE: no fallback is left to test."""
    (tmp_path / "backing").mkdir()
    (tmp_path / "fuse").mkdir()
    mount("bindfs", str(tmp_path / "backing"), str(tmp_path / "fuse"))
    answer = noreplace_answer(tmp_path / "fuse")
    if answer != errno.EINVAL:
        name = errno.errorcode.get(answer, str(answer))
        pytest.skip(f"this bindfs answers {name} to RENAME_NOREPLACE, not EINVAL: no fallback to test")
    return tmp_path / "fuse"


def test_atomic_dir_without_overwrite_publishes_at_a_free_path_on_fuse(fuse: Path) -> None:
    with atomic_dir(fuse / "site", overwrite=False) as staging:
        write(staging / "index", "new")

    assert (fuse / "site" / "index").read_text() == "new"
    assert os.listdir(fuse) == ["site"]


def test_atomic_dir_without_overwrite_on_fuse_raises_file_exists_at_a_taken_path(
    tmp_path: Path, fuse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel itself refuses a rename without replacing to a taken name
    (EEXIST), before the server could answer EINVAL to the flag."""
    (fuse / "site").mkdir()
    write(fuse / "site" / "theirs", "theirs")
    monkeypatch.chdir(fuse)

    with pytest.raises(FileExistsError) as raised, atomic_dir("site", overwrite=False) as staging:
        write(staging / "index", "new")

    assert raised.value.filename == "site"
    assert os.listdir(tmp_path / "backing") == ["site"]
    assert os.listdir(tmp_path / "backing" / "site") == ["theirs"]


def test_atomic_dir_without_overwrite_on_fuse_never_replaces_a_path_taken_while_it_publishes(
    tmp_path: Path, fuse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server answers EINVAL to the rename without replacing, so the path
    is claimed with mkdir() before the tree is renamed over it. Another client
    of the filesystem takes the path just before that mkdir(), the one moment
    a rename could replace its directory: the claim fails with EEXIST."""
    backing = tmp_path / "backing"
    real_mkdir = os.mkdir

    def mkdir_after_another_client(path: str, mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        if path == "site":  # the claim; the staging directory has a hidden name
            real_mkdir(backing / "site")
            write(backing / "site" / "theirs", "theirs")
        real_mkdir(path, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "mkdir", mkdir_after_another_client)

    with pytest.raises(FileExistsError) as raised, atomic_dir(fuse / "site", overwrite=False) as staging:
        write(staging / "index", "new")

    assert raised.value.filename == str(fuse / "site")
    assert os.listdir(backing) == ["site"]
    assert os.listdir(backing / "site") == ["theirs"]
    assert (backing / "site" / "theirs").read_text() == "theirs"


def test_replace_of_a_non_empty_directory_on_fuse_without_exchange_raises_einval_changing_nothing(
    fuse: Path,
) -> None:
    """bindfs answers EINVAL to RENAME_EXCHANGE as to every rename flag, so
    swap() raises EINVAL, and so does replace() of a non-empty directory,
    which needs the exchange: saying so, and that nothing was changed."""
    for name in ("new", "old"):
        (fuse / name).mkdir()
        write(fuse / name / "entry", name)
    with pytest.raises(OSError) as cannot_exchange:
        swap(fuse / "new", fuse / "old")
    assert cannot_exchange.value.errno == errno.EINVAL

    with pytest.raises(OSError) as raised:
        replace(fuse / "new", fuse / "old")

    assert raised.value.errno == errno.EINVAL
    assert (raised.value.filename, raised.value.filename2) == (str(fuse / "new"), str(fuse / "old"))
    assert "exchanging two names is not supported by this filesystem" in str(raised.value)
    assert "nothing was changed" in str(raised.value)
    assert ((fuse / "new" / "entry").read_text(), (fuse / "old" / "entry").read_text()) == ("new", "old")


def test_rename_noreplace_moves_a_file_by_link_and_unlink_on_fuse(tmp_path: Path, fuse: Path) -> None:
    write(fuse / "src", "new")
    inode = (tmp_path / "backing" / "src").stat().st_ino

    rename_noreplace(fuse / "src", fuse / "dst")

    assert (fuse / "dst").read_text() == "new"
    assert (tmp_path / "backing" / "dst").stat().st_ino == inode
    assert os.listdir(fuse) == ["dst"]


def test_rename_noreplace_on_fuse_moves_a_symlink_itself_not_its_target(fuse: Path) -> None:
    write(fuse / "target", "data")
    (fuse / "link").symlink_to("target")

    rename_noreplace(fuse / "link", fuse / "moved")

    assert os.readlink(fuse / "moved") == "target"
    assert (fuse / "target").is_file() and not (fuse / "target").is_symlink()
    assert (fuse / "target").read_text() == "data"
    assert sorted(os.listdir(fuse)) == ["moved", "target"]


def test_atomic_write_without_overwrite_through_a_named_temporary_on_fuse(
    fuse: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(atomicswap, "_O_TMPFILE", 0)

    with atomic_write(fuse / "f", overwrite=False) as f:
        f.write("new")

    assert (fuse / "f").read_text() == "new"
    assert os.listdir(fuse) == ["f"]
