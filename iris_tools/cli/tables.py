"""Tables as the commands print them: columns padded to their widest cell."""

from __future__ import annotations


def table(rows: list[list[str]], indent: str = "") -> str:
    """Columns padded to their widest cell; trailing spaces trimmed."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(indent + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
                     for row in rows)
