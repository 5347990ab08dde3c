"""The first process in a pane whose runtime needs the spawner's environment: it applies what spawn
saved (a 0600 JSON file in the worker's run directory), then becomes the runtime's command. A tmux
pane otherwise gets the tmux server's environment, not the caller's, and passing secrets on tmux's
command line would show them in `ps`.

    python -m supervisor.runtimes.launch ENV_FILE -- COMMAND [ARG...]

The file is `{"env": {NAME: VALUE}, "unset": [NAME or PREFIX_]}`: every variable of the families in
"unset" that the spawner did not have is removed (a key left in the tmux server from `fac up` must
not outlive the user's `unset`), then "env" is applied.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def read(path: Path) -> dict[str, Any]:
    """The saved file; nothing when it is gone (the command then runs as it would anyway)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def environment(current: Mapping[str, str], saved: Mapping[str, Any]) -> dict[str, str]:
    """`current` with the saved families cleared and the saved variables set."""
    env = {str(k): str(v) for k, v in (saved.get("env") or {}).items()}
    families = [str(f) for f in saved.get("unset") or []]

    def cleared(name: str) -> bool:
        return any(name == f or (f.endswith("_") and name.startswith(f)) for f in families)

    return {**{k: v for k, v in current.items() if not cleared(k)}, **env}


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m supervisor.runtimes.launch ENV_FILE -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    env = environment(os.environ, read(Path(argv[0])))
    command = argv[2:]
    try:
        os.execvpe(command[0], command, env)
    except OSError as e:
        print(f"fac: cannot start {command[0]}: {e}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
