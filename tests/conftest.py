"""Fixtures for fac's tests: a private tmux server per test, a hermetic environment, a real factory.

Every test gets its own tmux server (libtmux, through `supervisor.tmux.LiveTmux`, on a unique
socket exported as FAC_TMUX_SOCKET, killed in teardown), so nothing ever reaches the user's default
tmux server, and an environment with no FAC_* variables, no TMUX, an empty HOME and a fixed git
identity, so the suite behaves the same inside a worker's pane, inside tmux and on a fresh machine.
Helpers (run_fac, wait_for, capture_pane, ...) live in helpers.py.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import wait_for

from supervisor.tmux import LiveTmux

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "fac tests",
    "GIT_AUTHOR_EMAIL": "tests@fac.invalid",
    "GIT_COMMITTER_NAME": "fac tests",
    "GIT_COMMITTER_EMAIL": "tests@fac.invalid",
}
# Variables a worker pane or the developer's shell may set that would leak into the code under test.
CLEARED = (
    "FAC_ROOT",
    "FAC_WORKER",
    "FAC_ROLE",
    "FAC_BRANCH",
    "FAC_CONTEXT",
    "FAC_TASK",
    "FAC_FAULT_INJECT",
    "FAC_SOCKET",  # a worker's channel: with it, every `fac` the tests run would go to that supervisor
    "FAC_CHANNEL_PEER",
    "TMUX",
    "TMUX_PANE",
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
)


def pytest_configure(config: pytest.Config) -> None:
    missing = [tool for tool in ("git", "tmux") if shutil.which(tool) is None]
    if missing:
        raise pytest.UsageError(
            f"fac's tests need {' and '.join(missing)} (bash scripts/setup installs them)"
        )


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: one worker per core, at most 4. Each test starts real processes (tmux servers, gate
    runs, a Dask cluster), so a worker keeps about a core busy; more than 4 only crowds the timeouts."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def tmux_socket_path(socket: str) -> Path:
    return Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / socket


@pytest.fixture
def tmux_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveTmux]:
    """A private tmux server (libtmux's `Server` on a unique socket, exported as FAC_TMUX_SOCKET),
    killed in teardown."""
    socket = f"fac-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("FAC_TMUX_SOCKET", socket)
    server = LiveTmux(socket)
    yield server
    server.kill_server()
    wait_for(lambda: not server.running(), timeout=5, message=f"tmux server {socket} to exit")
    tmux_socket_path(socket).unlink(missing_ok=True)


@pytest.fixture
def tmux_socket(tmux_server: LiveTmux) -> str:
    """The private tmux server's socket name (`tmux -L NAME`)."""
    assert tmux_server.socket
    return tmux_server.socket


@pytest.fixture(scope="session")
def empty_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="session")
def pycache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pycache")


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch, empty_home: Path, pycache: Path, tmux_socket: str) -> None:
    for var in CLEARED:
        monkeypatch.delenv(var, raising=False)
    # The many `fac` subprocesses start as fast as in a normal install: bytecode is cached (outside
    # the source tree) even where the environment sets PYTHONDONTWRITEBYTECODE.
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    # Environment builds (project-container/) never reach the network in tests.
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(pycache))
    # No ~/.gitconfig, ~/.tmux.conf or /etc/gitconfig: the machine's settings must not matter.
    monkeypatch.setenv("HOME", str(empty_home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(empty_home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty_home / ".gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var, value in GIT_IDENTITY.items():
        monkeypatch.setenv(var, value)
    # A user who put fac on PATH as the README says, so hints read `fac ...` (tests of the other case,
    # fac not on PATH, set PATH themselves: tests/test_cli.py).
    here = str(Path(sys.executable).parent)
    if here not in os.environ.get("PATH", "").split(os.pathsep):
        monkeypatch.setenv("PATH", f"{here}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture
def factory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh factory made by `fac init --sample` (first commit on main); the test runs inside it."""
    from supervisor import factory as factorymod

    root = factorymod.init(tmp_path / "fac", sample=True).root
    monkeypatch.chdir(root)
    return root
