"""The first process in a pane whose runtime needs the spawner's environment: it reads the variables
spawn saved (a 0600 JSON file in the worker's run directory) into its environment, then becomes the
runtime's command. A tmux pane otherwise gets the tmux server's environment, not the caller's, and
passing secrets on tmux's command line would show them in `ps`.

    python -m supervisor.runtimes.launch ENV_FILE -- COMMAND [ARG...]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def load(path: Path) -> dict[str, str]:
    """The saved variables; nothing when the file is gone (the command then runs as it would anyway)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m supervisor.runtimes.launch ENV_FILE -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    os.environ.update(load(Path(argv[0])))
    command = argv[2:]
    try:
        os.execvp(command[0], command)
    except OSError as e:
        print(f"fac: cannot start {command[0]}: {e}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
