"""wake.watch: one inotify watcher, on a real temp directory; and what happens when inotify cannot start.
wake.on_signal: a signal that wakes a loop without a lock in its handler."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from helpers import wait_for

from supervisor import wake


def set_within(event: threading.Event, seconds: float = 5.0) -> bool:
    return event.wait(seconds)


def test_a_change_in_a_watched_directory_sets_the_event(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    w = wake.watch([a, b, tmp_path / "missing"])  # a directory that does not exist is skipped
    try:
        assert w.active and w.reason == ""
        assert not w.event.is_set()
        (a / "state.db-wal").write_text("x")
        assert set_within(w.event)
        w.event.clear()
        (b / "main").write_text("sha")
        assert set_within(w.event)
    finally:
        w.stop()
    w.stop()  # twice is harmless


def test_the_filter_sees_each_path_and_a_given_event_is_the_one_set(tmp_path: Path) -> None:
    (tmp_path / "other").write_text("")
    (tmp_path / "wanted").write_text("")
    mine = threading.Event()
    seen: list[str] = []

    def accept(path: str) -> bool:
        seen.append(path)
        return path.endswith("wanted")

    w = wake.watch([tmp_path], event=mine, accept=accept)
    try:
        assert w.event is mine
        (tmp_path / "other").write_text("changed")
        wait_for(lambda: str(tmp_path / "other") in seen, 5, "the watcher to see the other file")
        assert not mine.is_set()
        assert str(tmp_path / "other") in seen
        (tmp_path / "wanted").write_text("changed")
        assert set_within(mine)
    finally:
        w.stop()


def test_the_default_filter_drops_lock_shm_and_socket_files_only() -> None:
    assert not wake.not_noise("/f/.fac/supervisor.lock")
    assert not wake.not_noise("/f/.fac/spawner.sock")
    assert not wake.not_noise("/f/.fac/state.db-shm")
    assert not wake.not_noise("/f/.git/refs/heads/main.lock")
    assert wake.not_noise("/f/.fac/state.db-wal")
    assert wake.not_noise("/f/.git/refs/heads")  # the directory itself: a ref renamed into place


def test_without_inotify_it_says_why_and_the_caller_polls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watchdog.observers

    class NoInotify:
        def __init__(self) -> None:
            raise OSError(24, "inotify instance limit reached")

    monkeypatch.setattr(watchdog.observers, "Observer", NoInotify)
    w = wake.watch([tmp_path])
    assert not w.active
    assert "inotify instance limit reached" in w.reason
    (tmp_path / "state.db-wal").write_text("x")
    assert not w.event.wait(0.2)  # nothing watches: the caller's tick is all there is
    w.stop()


def test_the_supervisor_keeps_running_without_inotify(
    factory: Path, tmux_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before wake.py a failed inotify took the supervisor down; now it says so and polls at its tick."""
    import watchdog.observers

    from supervisor.daemon import Supervisor
    from supervisor.factory import Factory

    class NoInotify:  # what watchdog raises when the kernel's inotify limits are spent
        def __init__(self) -> None:
            raise OSError(28, "no space left on device")

    monkeypatch.setattr(watchdog.observers, "Observer", NoInotify)
    said: list[str] = []
    fac = Factory(factory)
    try:
        sup = Supervisor(fac, say=said.append)
        sup.watch()
    finally:
        fac.store.close()
    tick = fac.config.supervisor.tick
    assert said == [
        f"no inotify (OSError: [Errno 28] no space left on device): polling every {tick:g}s instead"
    ]


def test_reading_a_watched_file_is_not_a_change(tmp_path: Path) -> None:
    """Opening and reading a file (git rev-parse reading refs/heads/main, a reader of the store) must
    not wake: the supervisor's dashboard reads main on every pass, and so woke itself again, a pass
    after pass loop at a fifth of a core while nothing happened."""
    ref = tmp_path / "main"
    ref.write_text("sha\n")
    w = wake.watch([tmp_path])
    try:
        assert w.active
        for _ in range(20):
            assert ref.read_text() == "sha\n"
            with ref.open("rb") as f:
                f.read()
        assert not w.event.wait(0.5)
        ref.write_text("other\n")  # and a write still wakes it
        assert set_within(w.event)
    finally:
        w.stop()


def test_a_signal_wakes_from_a_thread_of_its_own_and_once_more_later() -> None:
    # Python runs a signal handler in the main thread, where an Event's own lock may be held (inside
    # its `wait`): setting the Event there can deadlock. The wake-up must come from another thread.
    calls: list[tuple[float, bool]] = []
    got = threading.Event()

    def woke() -> None:
        calls.append((time.monotonic(), threading.current_thread() is threading.main_thread()))
        if len(calls) == 2:
            got.set()

    restore = wake.on_signal(signal.SIGUSR1, woke, again=0.2)
    try:
        t0 = time.monotonic()
        os.kill(os.getpid(), signal.SIGUSR1)
        assert got.wait(10), calls
    finally:
        restore()
    (first, first_in_main), (second, second_in_main) = calls
    assert not first_in_main and not second_in_main
    assert first >= t0 and second - first >= 0.2
    assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
