"""`fac agent run`: the process in the pane of an `anthropic`-runtime worker (spawn starts it)."""

from __future__ import annotations

import os
import sys

import click

from supervisor.errors import FacError


@click.group(hidden=True)
def agent() -> None:
    """fac's built-in coding agent (the anthropic runtime)."""


@agent.command("run")
@click.option("--worker", help="Default in a pane: $FAC_WORKER.")
def agent_run(worker: str | None) -> None:
    """Run the agent loop for WORKER in its worktree: transcript on stdout, exit 0 once merged."""
    name = worker or os.environ.get("FAC_WORKER")
    if not name:
        raise FacError("which worker? pass --worker or run inside a worker's pane ($FAC_WORKER)")
    from supervisor.runtimes.anthropic import loop

    sys.exit(loop.main(name))
