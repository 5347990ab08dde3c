"""`fac agent`: the built-in coding agent (the anthropic runtime): `run` is the process in its pane;
`self`, `usage`, `event` and `stop` are what that process asks of the factory over its channel."""

from __future__ import annotations

import os
import sys

import click

from supervisor.commands import echo_json, find_factory, worker_arg
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


@agent.command("self")
@click.option("--worker", help="Default on a worker's channel: that worker (an agent sees only itself).")
def agent_self(worker: str | None) -> None:
    """Print (JSON) the worker's task, worktree, state, tokens and cost, and whether it is queued."""
    from supervisor import usage

    echo_json(usage.me(find_factory(), worker_arg(worker)))


@agent.command("usage")
@click.option("--turn", type=click.IntRange(0), required=True, help="The model call's number.")
@click.option("--tokens-in", type=click.IntRange(0), required=True, help="Input tokens (cache included).")
@click.option("--tokens-out", type=click.IntRange(0), required=True, help="Output tokens.")
@click.option("--cost", type=click.FloatRange(0), required=True, help="Its cost in dollars.")
@click.option("--stop-reason", help="Why the model stopped (the API's stop_reason).")
@click.option("--worker", help="Default on a worker's channel: that worker (only itself).")
def agent_usage(
    turn: int, tokens_in: int, tokens_out: int, cost: float, stop_reason: str | None, worker: str | None
) -> None:
    """Add one model call's tokens and cost to the worker; print (JSON) its new totals."""
    from supervisor import usage

    totals = usage.record_turn(
        find_factory(),
        worker_arg(worker),
        turn=turn,
        tokens_in=tokens_in,
        tokens_out=tokens_out,
        cost=cost,
        stop_reason=stop_reason,
    )
    echo_json(totals)


@agent.command("event")
@click.argument("kind")
@click.argument("fields", nargs=-1)
@click.option("--worker", help="Default on a worker's channel: that worker (only itself).")
def agent_event(kind: str, fields: tuple[str, ...], worker: str | None) -> None:
    """Log one of the agent's own events (agent-limit, agent-retry) with FIELD=VALUE pairs (whole
    numbers stay numbers)."""
    from supervisor import usage

    data: dict[str, object] = {}
    for field in fields:
        key, sep, value = field.partition("=")
        if not sep or not key.isidentifier():
            raise FacError(f"{field!r} is not FIELD=VALUE", hint="e.g. fac agent event agent-retry attempt=2")
        data[key] = int(value) if value.isdigit() else value
    usage.record_event(find_factory(), worker_arg(worker), kind, data)


@agent.command("stop")
@click.option("--reason", required=True, help="Why the agent stops (e.g. its token budget is spent).")
@click.option("--worker", help="Default on a worker's channel: that worker (only itself).")
def agent_stop(reason: str, worker: str | None) -> None:
    """The agent stops itself: its worker's state becomes `stopped`."""
    from supervisor import usage

    name = worker_arg(worker)
    state = usage.stop(find_factory(), name, reason)
    click.echo(f"{name}: {state}")
