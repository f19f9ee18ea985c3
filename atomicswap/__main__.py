"""``python -m atomicswap``: the command line, as the ``atomicswap`` script runs it."""

# Only when run, so that importing this module (pydoc atomicswap.__main__) runs nothing.
if __name__ == "__main__":
    from atomicswap import main

    raise SystemExit(main())
