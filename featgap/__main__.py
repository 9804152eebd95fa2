"""``python -m featgap`` is the same as the ``featgap`` command."""

from featgap.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
