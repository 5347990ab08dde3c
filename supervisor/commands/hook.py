"""`fac hook`: a runtime reports its worker's state (Claude Code's hooks, receipts)."""

from __future__ import annotations

import click

from supervisor.commands import echo_json, find_factory, worker_arg

EVENTS = ("session-start", "prompt", "working", "stop", "idle", "notification", "ack")


@click.command()
@click.argument("event", type=click.Choice(EVENTS))
@click.argument("ids", nargs=-1, type=int)
@click.option("--worker", help="Default in a pane: $FAC_WORKER.")
@click.option("--check", is_flag=True, help="With stop: run the inner checks and block the stop while red.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def hook(event: str, ids: tuple[int, ...], worker: str | None, check: bool, as_json: bool) -> None:
    """A runtime reports its own state: fac knows instead of guessing from the screen.

    Claude Code's hooks call this with their JSON on stdin (session_id is kept so a restart can
    resume). `fac hook ack ID...` is a message receipt.
    """
    from supervisor import hooks

    name = worker_arg(worker)
    data = hooks.read_hook_input()
    if ids:
        data["ids"] = list(ids)
    res = hooks.hook(find_factory(), name, event, data, check=check)
    if as_json:
        echo_json(res)
    elif res.get("stdout"):
        click.echo(res["stdout"])
