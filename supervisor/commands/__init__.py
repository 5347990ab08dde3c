"""`fac` subcommands, one module per group of commands; `supervisor.cli` loads each one lazily.

Command modules stay cheap to import (`fac X --help` loads only X's module): the domain modules
they call are imported inside the command bodies.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
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


def cache_option(default: bool, help: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """`--cache/--no-cache`, one spelling for every command that may answer from stored results
    (its default differs: `fac check --ref` runs unless asked, the gate on main reuses). The older
    `--cached` of `fac check` still works, hidden."""

    def decorate(f: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(f)
        def run(*args: Any, cached_alias: bool, cache: bool, **kwargs: Any) -> None:
            f(*args, cache=cache or cached_alias, **kwargs)

        run = click.option("--cached", "cached_alias", is_flag=True, hidden=True)(run)
        return click.option("--cache/--no-cache", default=default, show_default=True, help=help)(run)

    return decorate


def worker_arg(worker: str | None) -> str:
    """The worker a command is about: --worker, else the agent itself (in a pane: only itself)."""
    from supervisor import identity

    w = identity.own(worker)
    if not w:
        raise FacError(
            "which worker?", hint="pass --worker NAME, or run this inside a worker's pane (FAC_WORKER)"
        )
    return w


def task_text(task: str | None, task_file: str | None, required: bool = False) -> str | None:
    """The task from --task TEXT, --task - (stdin) or --task-file PATH (one of them), size-checked.

    A long task given in a file or on stdin never meets the shell's limit on one argument.
    """
    from pathlib import Path

    from supervisor.model import check_task_size
    from supervisor.text import read_stdin_text

    if task is not None and task_file is not None:
        raise FacError("pass the task once: --task or --task-file, not both")
    if task_file is not None:
        try:
            data = Path(task_file).read_bytes()
        except OSError as e:
            raise FacError(
                f"cannot read the task file {task_file}: {e.strerror}", hint="check the path"
            ) from None
        task = data.decode("utf-8", "backslashreplace")
    elif task == "-":
        task = read_stdin_text(sys.stdin)
    if task is None:
        if required:
            raise FacError(
                "no task given", hint='fac task add "what to build" (or --task-file PATH, or - for stdin)'
            )
        return None
    if not task.strip():
        raise FacError("the task is empty", hint='fac task add "what to build"')
    check_task_size(task)
    return task


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
