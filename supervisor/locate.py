"""Where the factory is: the nearest directory upwards that holds factory.toml.

Found with `os.path` alone: a human's `fac spawn` asks this first, before anything heavy is
imported (the config module included), to find the spawner's socket.
"""

from __future__ import annotations

import os

CONFIG_NAME = "factory.toml"


def nearest_root(cwd: str) -> str | None:
    """The factory root for the directory `cwd` (an absolute, resolved path), or None outside one.

    A worker's worktree (`.fac/worktrees/<name>`) has its own copy of factory.toml; the root is the
    directory that holds `.fac/`, not the worktree.
    """
    parts = cwd.split(os.sep)
    if ".fac" in parts:
        candidate = os.sep.join(parts[: parts.index(".fac")]) or os.sep
        if os.path.isfile(os.path.join(candidate, CONFIG_NAME)):
            return candidate
    d = cwd
    while True:
        if os.path.isfile(os.path.join(d, CONFIG_NAME)):
            return d
        up = os.path.dirname(d)
        if up == d:
            return None
        d = up
