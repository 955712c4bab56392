"""``python -m makini_async._openapi [--check]``: regenerate every generated file."""

from __future__ import annotations

from ._regenerate import main

__all__: list[str] = []

if __name__ == "__main__":
    raise SystemExit(main())
