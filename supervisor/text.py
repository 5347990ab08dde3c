"""Small text helpers shared by the CLI and the views."""

from __future__ import annotations

from typing import TextIO


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Plain aligned columns: readable in a pane, greppable in a script."""
    cells = [headers, *rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def shown_escaped(text: str) -> str:
    """Text a user gave (an argument) with any bytes that are not UTF-8 shown as escapes.

    Python hands undecodable argv bytes over as lone surrogates, which SQLite and the terminal
    refuse; the byte 0xE9 of a Latin-1 "cafe" becomes the four characters \\xe9 instead of a traceback.
    """
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def read_stdin_text(stream: TextIO) -> str:
    """All of stdin as text, with bytes that are not UTF-8 shown as escapes."""
    return stream.buffer.read().decode("utf-8", "backslashreplace")
