"""``python -m makini_async.cli``: the ``makini-async`` command."""

from __future__ import annotations

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
