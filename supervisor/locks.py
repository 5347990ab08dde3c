"""Single-instance locks for fac's long-running processes (the queue, the supervisor).

An flock on a file in `.fac/`: the kernel drops it when the process dies, even by kill -9, so a
crashed process never leaves a stale lock behind. The holder's pid is written for the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from supervisor.errors import FacError


def acquire(path: Path, what: str, hint: str, error: type[FacError] = FacError) -> int:
    """Take the lock or raise `error` naming the pid that holds it; returns the fd to release."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        other = os.read(fd, 64).decode(errors="replace").strip()
        os.close(fd)
        raise error(f"{what} is already running (pid {other or '?'})", hint=hint) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def release(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)
