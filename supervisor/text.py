"""Small text helpers shared by the CLI and the views."""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO


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


# One format each, everywhere (status, queue, log, report): a sha is its first 10 characters in text,
# a time is the local clock (HH:MM:SS) in text and, in --json, ISO 8601 next to the epoch seconds.
SHA_WIDTH = 10


def short_sha(sha: str | None) -> str:
    """A commit as text shows it: its first 10 characters ('-' for none)."""
    return sha[:SHA_WIDTH] if sha else "-"


def clock(ts: float | None) -> str:
    """A time as text shows it: the local clock, HH:MM:SS ('-' for none)."""
    if ts is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(ts))


def iso_time(ts: float | None) -> str | None:
    """A time as --json shows it next to its epoch seconds: ISO 8601, local, with its UTC offset."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def with_iso_times(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    """`row` with `<key>_iso` added after each epoch-seconds `key` it has (existing keys stay as they are)."""
    out = dict(row)
    for k in keys:
        if k in row and (row[k] is None or isinstance(row[k], int | float)):
            out[f"{k}_iso"] = iso_time(row[k])
    return out


# fac's commands, as hints name them (tests/test_cli.py keeps this equal to the CLI's own registry).
COMMAND_NAMES = frozenset(
    "agent answer approve ask attach check config context delta demo doctor down env hook inbox init kill "
    "line llm-review log queue report roles send spawn spec state status submit supervise task up "
    "verify".split()
)
_NAMED = re.compile(
    r"(?<![\w./-])fac (?=(?:"
    + "|".join(sorted(map(re.escape, COMMAND_NAMES), key=len, reverse=True))
    + r")\b)"
)


@functools.cache
def fac_command() -> str:
    """How the user's shell runs this fac: `fac` when PATH finds this same installation, else the
    absolute path of this installation's `fac` script (or `python -m supervisor` without one)."""
    mine = Path(sys.executable).parent / "fac"
    found = shutil.which("fac")
    if found and mine.is_file():
        try:
            if os.path.samefile(found, mine):
                return "fac"
        except OSError:
            pass
    if mine.is_file():
        return shlex.quote(str(mine))
    return f"{shlex.quote(sys.executable)} -m supervisor"


def typed(text: str) -> str:
    """`text` (a hint, a next step) with each `fac COMMAND` in it spelled as the user's shell can run
    it: unchanged when `fac` is on PATH, else with this installation's absolute path."""
    cmd = fac_command()
    return text if cmd == "fac" else _NAMED.sub(lambda _m: f"{cmd} ", text)
