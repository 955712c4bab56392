"""The rules of decoding connector data, as data: one table for the docs.

`DECODING_ROWS` is what the tolerant decoders (`_tolerant`, over the converters of `_wire`) do
with each declared type. The models' docstring shows it as a reStructuredText table
(`decoding_section`, written by ``_generate.py``); README.md's "Decoding connector data" shows
the same rows as a Markdown table (`markdown_table`), and a test keeps the two in step.
"""

from __future__ import annotations

import textwrap
from typing import Final

__all__ = ["DECODING_ROWS", "decoding_section", "decoding_table", "markdown_table"]

#: The rules of decoding connector data: (declared type, read silently, does not fit). The
#: models' docstring shows them as a table, and README.md's "Decoding connector data" as well.
DECODING_ROWS: Final = (
    (
        "text (``str``)",
        "a string; an integer (a numeric id), as its decimal text",
        "``None``: a fraction, a boolean, an object, a list",
    ),
    (
        "number (``Decimal``)",
        (
            'a number; a numeric string (``"43"``, ``"1.5e3"``, spaces around ignored); '
            '``""`` and ``{}`` read as unset (``None``)'
        ),
        (
            '``None``: ``"NaN"``, ``"Infinity"``, other text (``"12,5"``, ``"1,234.50"``, '
            '``"$12"``), a boolean, a list, an object with keys'
        ),
    ),
    (
        "integer (``int``)",
        (
            'an integer; an integral number or numeric string (``3.0``, ``"12"``, ``"1e3"``);'
            ' ``""``, ``{}``: unset'
        ),
        '``None``: a fraction (``1.5``, ``"1.5"``), a boolean, other text',
    ),
    (
        "boolean (``bool``)",
        (
            '``true``, ``false``; ``0``, ``1``; ``"true"``, ``"false"``, ``"1"``, ``"0"``, '
            '``"yes"``, ``"no"`` in any case, with spaces around; ``""``, ``{}``: unset'
        ),
        '``None``: anything else (``2``, ``"Y"``, ``"X"``)',
    ),
    (
        "timestamp (``datetime``, always aware)",
        (
            "ISO 8601 / RFC 3339 with ``Z`` or an offset; without a zone (taken as UTC); a "
            "date alone (midnight UTC); a space or ``t`` for ``T``, ``z`` for ``Z``, a "
            "decimal comma, the basic form (``20250114T020318Z``); more than six fraction "
            "digits (rounded to the microsecond); ``/Date(1405344000000)/``; a number of Unix"
            ' seconds (1e9 to 1e11) or milliseconds (1e11 to 1e14); ``""``, ``{}``: unset'
        ),
        (
            '``None``: other text (``"next tuesday"``, ``"14/01/2025"``), other numbers, a '
            "boolean, a list"
        ),
    ),
    (
        "list of keys (``tuple[str, ...]``)",
        (
            "a list of strings (integers as text); a lone string as a list of one; ``null``, "
            "``[]``, ``{}`` as ``()``"
        ),
        "``()``: a number, an object with keys, a list holding anything else",
    ),
    (
        "level or status (``Level | str``)",
        "a known value as the enum member; any other string as it is; an integer as text",
        "``None``: a fraction, a boolean, an object, a list",
    ),
    (
        "nested object",
        "an object",
        "``None``: anything else",
    ),
    (
        "list of nested objects",
        ("a list of objects; one object as a list of one; ``null``, ``[]``, ``{}`` as ``()``"),
        "``()``: text, a number, a list holding a non-object",
    ),
    (
        "free-form JSON (``JSON``)",
        "anything, as decoded",
        "(always fits)",
    ),
)
_DECODING_RULES: Final = (
    (
        "A value that does not fit leaves its attribute at the value shown; the value as "
        "received is in the record's ``invalid`` mapping under its wire name "
        '(``record.invalid["dueAt"]``), and ``raw`` still holds the whole record as '
        "received. Nested objects keep their own ``invalid``. The logger "
        "``makini_async.models`` warns once per model and field (not once per record) "
        "that such values came; the values themselves are not logged. Fields a model does"
        " not know are kept in ``extra`` under their wire names."
    ),
    (
        "Strict decoding (``ConnectionRegistry(strict=True)``, or ``strict=True`` on a "
        "typed call such as ``list``, ``get`` or ``create``) applies the same coercions "
        "but raises ``ResponseDecodeError`` for a value that does not fit, naming its "
        "path (``$.data[3].dueAt``); the pytest plugin's ``makini_registry`` is strict. "
        "In both modes a record that is not a JSON object fails its page. Write bodies "
        "are not affected: the ``...Input`` models are encoded as before."
    ),
)
_TABLE_WIDTHS: Final = (20, 48, 28)


def decoding_table() -> str:
    """`DECODING_ROWS` as a reStructuredText simple table, 100 columns wide."""
    rule = "  ".join("=" * width for width in _TABLE_WIDTHS)
    head = ("declared type", "read silently (lossless)", "does not fit: reads")
    out = [rule, "  ".join(h.ljust(w) for h, w in zip(head, _TABLE_WIDTHS, strict=True)).rstrip()]
    out.append(rule)
    for row in DECODING_ROWS:
        cells = [
            textwrap.wrap(text, width, break_long_words=False, break_on_hyphens=False)
            for text, width in zip(row, _TABLE_WIDTHS, strict=True)
        ]
        for index in range(max(map(len, cells))):
            parts = [
                (cell[index] if index < len(cell) else "").ljust(width)
                for cell, width in zip(cells, _TABLE_WIDTHS, strict=True)
            ]
            out.append("  ".join(parts).rstrip())
        out.append("")
    out[-1] = rule
    return "\n".join(out) + "\n"


def decoding_section() -> str:
    """The section of the models' docstring that states the rules, ending in a blank line."""
    return (
        "Decoding connector data\n"
        "-----------------------\n\n"
        "Makini's records come from hundreds of source systems, and their values are not always\n"
        "of the declared type. Decoding is tolerant by default: a value that does not fit never\n"
        "fails the page. Lossless coercions are applied silently:\n\n"
        + decoding_table()
        + "\n"
        + "".join(textwrap.fill(paragraph, 96) + "\n\n" for paragraph in _DECODING_RULES)
    )


def markdown_table() -> str:
    """`DECODING_ROWS` as the Markdown table of README.md."""
    lines = [
        "| declared type | read silently (lossless) | does not fit: the attribute reads |",
        "|---|---|---|",
    ]
    for row in DECODING_ROWS:
        cells = [cell.replace("``", "`").replace("|", "\\|") for cell in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
