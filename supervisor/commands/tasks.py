"""`fac task` and `fac task add`: the kanban of waiting tasks."""

from __future__ import annotations

import click

from supervisor.commands import echo_json, find_factory, task_text
from supervisor.errors import FacError
from supervisor.model import RUNTIME_NAMES
from supervisor.text import table, typed


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
@click.pass_context
def task(ctx: click.Context, as_json: bool) -> None:
    """Kanban: tasks wait here until the supervisor pulls them under the WIP limit.

    Without a subcommand it lists the tasks, like `fac task ls`. A task is todo, assigned (a worker
    was spawned for it), done (its work merged), failed (its spawn failed) or abandoned (its worker
    exited, was stopped or removed with its work not merged); the last two show why, and
    `fac task retry ID` puts them back in todo.
    """
    if ctx.invoked_subcommand:
        return
    _list(as_json)


@task.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def task_ls(as_json: bool) -> None:
    """List the tasks: id, state, role, worker, the task, and why a failed or abandoned one ended."""
    _list(as_json)


def _list(as_json: bool) -> None:
    from dataclasses import asdict

    from supervisor import tasks

    fac = find_factory()
    ts = tasks.all_tasks(fac)
    if as_json:
        echo_json([asdict(t) for t in ts])
        return
    if not ts:
        click.echo(typed('no tasks: add one with fac task add "..."'))
        return
    rows = [[str(t.id), t.state, t.role, t.worker or "-", t.text[:60], t.reason or ""] for t in ts]
    click.echo(table(rows, ["ID", "STATE", "ROLE", "WORKER", "TASK", "REASON"]))
    click.echo(f"WIP {tasks.wip(fac)}/{fac.config.supervisor.max_workers}")


@task.command("rm")
@click.argument("tid", metavar="ID", type=int)
def task_rm(tid: int) -> None:
    """Remove task ID (one that no worker works on: `fac kill` its worker first)."""
    from supervisor import tasks

    t = tasks.remove(find_factory(), tid)
    click.echo(f"task {t.id} removed ({t.state}): {t.text[:60]}")


@task.command("retry")
@click.argument("tid", metavar="ID", type=int)
def task_retry(tid: int) -> None:
    """Put a failed or abandoned task back in todo; the supervisor pulls it with a new worker."""
    from supervisor import tasks

    t = tasks.retry(find_factory(), tid)
    click.echo(f"task {t.id} is todo again; the supervisor pulls it when a WIP slot is free")


@task.command("add")
@click.argument("text", required=False)
@click.option("--task", "task_opt", help="The task (as TEXT); - reads it from stdin.")
@click.option(
    "--task-file", type=click.Path(dir_okay=False), help="Read the task from this file (UTF-8 text)."
)
@click.option("--role", default="worker", show_default=True)
@click.option("--runtime", type=click.Choice(RUNTIME_NAMES))
@click.option("--cmd", "command", help="For the command runtime: the command the worker runs.")
@click.option("--delta", help="The delta this task implements.")
def task_add(
    text: str | None,
    task_opt: str | None,
    task_file: str | None,
    role: str,
    runtime: str | None,
    command: str | None,
    delta: str | None,
) -> None:
    """Queue a task; a worker is spawned for it when the factory is under [supervisor] max_workers.

    The task is TEXT, or --task TEXT, or read from stdin (TEXT or --task is -), or from --task-file.
    """
    from supervisor import roles, tasks

    if text is not None and task_opt is not None:
        raise FacError("pass the task once: TEXT or --task, not both")
    found = task_text(text if text is not None else task_opt, task_file, required=True)
    assert found is not None
    text = found

    runtime = roles.runtime_for(runtime, command)
    tid = tasks.add(find_factory(), text, role=role, runtime=runtime, command=command, delta=delta)
    click.echo(f"task {tid} queued; the supervisor pulls it when a WIP slot is free")
