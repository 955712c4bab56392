"""MkDocs hooks of the documentation site (listed under ``hooks:`` in mkdocs.yml)."""

from __future__ import annotations

__all__: list[str] = []
