"""`fac task` and `fac task add`: the kanban of waiting tasks."""

from __future__ import annotations

import click

from supervisor.commands import echo_json, find_factory
from supervisor.model import RUNTIME_NAMES
from supervisor.text import table


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
@click.pass_context
def task(ctx: click.Context, as_json: bool) -> None:
    """Kanban: tasks wait here until the supervisor pulls them under the WIP limit."""
    if ctx.invoked_subcommand:
        return
    from dataclasses import asdict

    from supervisor import tasks

    fac = find_factory()
    ts = tasks.all_tasks(fac)
    if as_json:
        echo_json([asdict(t) for t in ts])
        return
    if not ts:
        click.echo('no tasks: add one with fac task add "..."')
        return
    rows = [[str(t.id), t.state, t.role, t.worker or "-", t.text[:60]] for t in ts]
    click.echo(table(rows, ["ID", "STATE", "ROLE", "WORKER", "TASK"]))
    click.echo(f"WIP {tasks.wip(fac)}/{fac.config.supervisor.max_workers}")


@task.command("add")
@click.argument("text")
@click.option("--role", default="worker", show_default=True)
@click.option("--runtime", type=click.Choice(RUNTIME_NAMES))
@click.option("--cmd", "command", help="For the command runtime: the command the worker runs.")
@click.option("--delta", help="The delta this task implements.")
def task_add(text: str, role: str, runtime: str | None, command: str | None, delta: str | None) -> None:
    """Queue a task; a worker is spawned for it when the factory is under [supervisor] max_workers."""
    from supervisor import roles, tasks

    runtime = roles.runtime_for(runtime, command)
    tid = tasks.add(find_factory(), text, role=role, runtime=runtime, command=command, delta=delta)
    click.echo(f"task {tid} queued; the supervisor pulls it when a WIP slot is free")
