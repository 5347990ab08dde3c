"""Wake on file changes: the one inotify watcher (watchdog) fac's processes use.

`watch(dirs)` sets an Event whenever something changes directly in one of `dirs` (not below them):
a file created, written, renamed or deleted. Reading is not a change: watchdog (since 2.3) also
reports opening a file and closing it unwritten, and a process that wakes on those wakes itself
(the supervisor's dashboard reads `refs/heads/main` on every pass, and so woke its next pass), so
the kernel is not even asked for them.
When inotify cannot start (its limits are spent, an odd file system), `Watch.active` is False and
`Watch.reason` says why: nothing sets the Event then, and the caller polls at its own tick.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# SQLite's shared-memory index and fac's lock files change on every read, and a socket appears when
# its server starts (the spawner's, in .fac/): no reason to wake.
NOISE = ("-shm", ".lock", ".sock")


def not_noise(path: str) -> bool:
    """The default filter: every change except those to NOISE files."""
    return not path.endswith(NOISE)


@dataclass
class Watch:
    """A running watcher (or the reason there is none). `stop()` is safe either way."""

    event: threading.Event
    active: bool
    reason: str = ""
    _observer: Any = field(default=None, repr=False)

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer = None


def watch(
    dirs: Iterable[Path],
    *,
    accept: Callable[[str], bool] = not_noise,
    event: threading.Event | None = None,
) -> Watch:
    """Set `event` (a new one by default) on each change in `dirs` whose path `accept`s.

    `accept` gets each event's source path, the watched directory's own too (it changes when a file
    in it is created, written or renamed into place: git's `main.lock` -> `main`). Directories that
    do not exist are skipped (nothing to watch there).
    """
    wake = event if event is not None else threading.Event()
    try:
        from watchdog import events as ev
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        class Poke(FileSystemEventHandler):
            def on_any_event(self, change: FileSystemEvent) -> None:
                path = change.src_path
                if accept(path.decode() if isinstance(path, bytes) else str(path)):
                    wake.set()

        # Changes only (the kernel is asked for nothing else): not FileOpenedEvent, not
        # FileClosedNoWriteEvent.
        changes: list[type[FileSystemEvent]] = [
            ev.FileCreatedEvent,
            ev.FileModifiedEvent,
            ev.FileClosedEvent,
            ev.FileMovedEvent,
            ev.FileDeletedEvent,
            ev.DirCreatedEvent,
            ev.DirModifiedEvent,
            ev.DirMovedEvent,
            ev.DirDeletedEvent,
        ]
        observer = Observer()
        for d in dirs:
            if d.is_dir():
                observer.schedule(Poke(), str(d), recursive=False, event_filter=changes)
        observer.daemon = True
        observer.start()
    except Exception as e:  # no inotify here (limits, odd file systems): the caller polls
        return Watch(wake, active=False, reason=f"{type(e).__name__}: {e}")
    return Watch(wake, active=True, _observer=observer)


def on_signal(signum: int, wake: Callable[[], None], *, again: float = 0.0) -> Callable[[], None]:
    """Call `wake()` on each `signum` (and once more `again` s later), from a thread of its own.

    Never in the signal handler: Python runs a handler in the main thread between two bytecodes,
    where that thread may hold the very lock `wake` takes (an Event's, inside its own `wait`), and
    the process deadlocks (CPython issue #126434). The handler only writes a byte to a pipe, which
    takes no lock; a daemon thread reads it and calls `wake`. Call from the main thread (Python
    installs handlers there only). Returns a function that puts the previous handler back.
    """
    import os
    import signal
    import time

    r, w = os.pipe()
    os.set_blocking(w, False)

    def handler(_sig: int, _frame: object) -> None:
        try:
            os.write(w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: wake-ups are pending already

    def relay() -> None:
        while True:
            try:
                got = os.read(r, 512)
            except OSError:
                return
            if not got:
                return  # the write end closed: restored
            wake()
            if again > 0:
                time.sleep(again)
                wake()

    previous = signal.signal(signum, handler)
    threading.Thread(target=relay, name=f"fac-signal-{signum}", daemon=True).start()

    def restore() -> None:
        signal.signal(signum, previous)
        os.close(w)

    return restore
