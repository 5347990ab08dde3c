"""What the anthropic agent's pane shows: who said what, each tool call and a one-line result."""

from __future__ import annotations

import json
import sys
from typing import IO, Any


class Transcript:
    """The readable log the agent prints into its pane."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        tty = getattr(out, "isatty", lambda: False)()
        self.bold = (lambda s: f"\033[1m{s}\033[0m") if tty else (lambda s: s)
        self.dim = (lambda s: f"\033[2m{s}\033[0m") if tty else (lambda s: s)

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def who(self, speaker: str, text: str) -> None:
        lines = text.strip().splitlines() or [""]
        self.say(f"{self.bold(speaker + ':')} {lines[0]}")
        for line in lines[1:]:
            self.say(f"  {line}")

    def call(self, name: str, args: dict[str, Any]) -> None:
        shown = ", ".join(f"{k}={_short_arg(v)}" for k, v in args.items())
        self.say(f"  -> {name}({shown})")

    def result(self, text: str, error: bool) -> None:
        lines = text.strip().splitlines() or ["(empty)"]
        first = lines[0] if len(lines[0]) <= 110 else lines[0][:107] + "..."
        more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
        self.say(f"  <- {'ERROR: ' if error else ''}{first}{self.dim(more)}")


def _short_arg(v: Any) -> str:
    if isinstance(v, str):
        if len(v) > 60 or "\n" in v:
            return f"<{len(v)} chars, {v.count(chr(10)) + 1} lines>"
        return repr(v)
    s = json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."


def flush_tty() -> None:
    """Drop what tmux pasted into this pane's input: the agent reads the inbox, not its terminal."""
    try:
        import termios

        if sys.stdin.isatty():
            termios.tcflush(sys.stdin.fileno(), termios.TCIFLUSH)
    except (ImportError, OSError, ValueError):
        pass


def quiet_tty() -> None:
    """No echo: pasted messages would interleave with the transcript (which prints them itself)."""
    try:
        import termios

        if sys.stdin.isatty():
            fd = sys.stdin.fileno()
            attrs = termios.tcgetattr(fd)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except (ImportError, OSError, ValueError):
        pass
