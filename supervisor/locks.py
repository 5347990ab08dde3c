"""Single-instance locks for fac's long-running processes (the queue, the supervisor).

An flock on a file in `.fac/`: the kernel drops it when the process dies, even by kill -9, so a
crashed process never leaves a stale lock behind. The holder's pid is written for the error message.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
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


def holder(path: Path) -> int | None:
    """The pid of the live process holding the lock at `path`, or None when nobody holds it.

    Read from /proc/locks (the kernel's table), so asking never takes the lock from its owner's
    next start; where /proc/locks cannot be read, a non-blocking shared flock asks instead.
    """
    try:
        st = path.stat()
    except OSError:
        return None
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return _probe(path)
    for line in table.splitlines():
        # "1: FLOCK  ADVISORY  WRITE 12345 08:01:1234567 0 EOF" ("->" marks a blocked waiter)
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields:
            continue
        dev_inode = fields[5].rsplit(":", 1)
        if len(dev_inode) == 2 and dev_inode[1] == str(st.st_ino):
            # Held: the kernel drops the lock when its holder dies. Its pid as this pid namespace
            # knows it, else as the holder wrote it.
            pid = int(fields[4]) if fields[4].isdigit() else 0
            if pid and Path(f"/proc/{pid}").exists():
                return pid
            text = path.read_text(errors="replace").strip()
            return int(text) if text.isdigit() else -1
    return None


def _probe(path: Path) -> int | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.read(fd, 64).decode(errors="replace").strip()
        return int(text) if text.isdigit() else -1
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Wait for the lock at `path` and hold it for the block (one builder of a thing at a time)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
