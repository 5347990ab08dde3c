"""`fac` subcommands, one module per group of commands; `supervisor.cli` loads each one lazily.

Command modules stay cheap to import (`fac X --help` loads only X's module): the domain modules
they call are imported inside the command bodies.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from supervisor.errors import FacError

if TYPE_CHECKING:
    from supervisor.factory import Factory


def find_factory() -> Factory:
    """The factory this command runs in ($FAC_ROOT, else the nearest factory.toml upwards)."""
    from supervisor.factory import Factory

    return Factory.find()


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def worker_arg(worker: str | None) -> str:
    """The worker a command is about: --worker, else $FAC_WORKER (set in every worker's pane)."""
    w = worker or os.environ.get("FAC_WORKER")
    if not w:
        raise FacError(
            "which worker?", hint="pass --worker NAME, or run this inside a worker's pane (FAC_WORKER)"
        )
    return w


def timestamped(msg: str) -> None:
    """Print one line with the time in front, flushed at once (the queue's and supervisor's windows)."""
    click.echo(f"{time.strftime('%H:%M:%S')} {msg}")
    sys.stdout.flush()


def ago(ts: float) -> str:
    s = max(0, int(time.time() - ts))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"
