"""Small text helpers shared by the CLI and the views."""

from __future__ import annotations


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Plain aligned columns: readable in a pane, greppable in a script."""
    cells = [headers, *rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )
