"""`fac spawn`, `fac status`, `fac attach` and `fac kill`: a worker's window, branch and worktree."""

from __future__ import annotations

import os
import sys
import time
from typing import NoReturn

import click

from supervisor.commands import echo_json, find_factory, task_text
from supervisor.errors import FacError
from supervisor.model import RUNTIME_NAMES
from supervisor.text import typed


@click.command()
@click.argument("role")
@click.option("--name", help="Worker name (default: ROLE-N).")
@click.option(
    "--task", help="The task, given to the agent in its context (and $FAC_TASK); - reads it from stdin."
)
@click.option(
    "--task-file", type=click.Path(dir_okay=False), help="Read the task from this file (UTF-8 text)."
)
@click.option("--runtime", type=click.Choice(RUNTIME_NAMES), help="Default: the role's.")
@click.option("--cmd", "command", help="Command line to run in the pane; implies --runtime command.")
@click.option("--base", help="Branch point (default: main).")
@click.option("--delta", help="Assign an approved delta (`fac delta ls`): it goes in-progress.")
@click.option(
    "--no-up", is_flag=True, help="Do not start the factory's supervisor and merge queue if they are not up."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def spawn(
    role: str,
    name: str | None,
    task: str | None,
    task_file: str | None,
    runtime: str | None,
    command: str | None,
    base: str | None,
    delta: str | None,
    no_up: bool,
    as_json: bool,
) -> None:
    """Start a worker: branch fac/NAME, worktree .fac/worktrees/NAME, tmux window NAME.

    All or nothing: if any step fails, whatever was created is removed again. The pane runs in
    the worktree with FAC_ROOT, FAC_WORKER, FAC_ROLE and FAC_BRANCH set. When the factory is not
    up, the spawn starts it whole (as `fac up` does: the supervisor and the merge queue), since a
    worker without them is never restarted, messaged or merged; --no-up starts only the worker.
    """
    from supervisor import roles, session, workers

    task = task_text(task, task_file)
    fac = find_factory()
    was_up = fac.session_running()  # a same-named session of another factory is refused here
    runtime = roles.runtime_for(runtime, command)
    res = workers.spawn(
        fac, role, name=name, task=task, runtime=runtime, command=command, base=base, delta=delta
    )
    started: list[str] = []
    if not was_up and not no_up:
        started = session.up(fac)["started"]
    if as_json:
        echo_json({**res, "started": started})
        return
    click.echo(
        f"spawned {res['name']} ({res['role']}, {res['runtime']}) on {res['branch']} in {res['worktree']}"
    )
    for note in res["notes"]:
        click.echo(note)
    if started:
        click.echo(f"the factory was not up: started {', '.join(started)} in session {fac.session}")
    elif not was_up:
        click.echo(
            typed("note: the factory is not up (--no-up): nothing restarts, messages or merges it; `fac up`")
        )
    click.echo(typed(f"watch it: fac attach {res['name']}"))


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until interrupted.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.2, 3600))
def status(as_json: bool, watch: bool, interval: float) -> None:
    """Workers with role, branch, state, process and window; the session and the queue."""
    from supervisor import status as statusmod

    fac = find_factory()
    if as_json:
        echo_json(statusmod.collect(fac))
        return
    while True:
        text = statusmod.render(statusmod.collect(fac))
        if not watch:
            click.echo(text)
            return
        click.echo("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + text, nl=True)
        time.sleep(interval)


@click.command()
@click.argument("worker")
def attach(worker: str) -> NoReturn:
    """Put your terminal on WORKER's window (switch-client when already inside tmux)."""
    from supervisor.session import QUEUE_WINDOW, SUPERVISOR_WINDOW

    fac = find_factory()
    if worker not in (SUPERVISOR_WINDOW, QUEUE_WINDOW):
        fac.worker(worker)
    panes = {p.window_name: p for p in fac.panes()}
    if worker not in panes:
        raise FacError(f"{worker} has no window in session {fac.session}", hint="is the factory up? `fac up`")
    argv = fac.tmux.attach_argv(fac.session, panes[worker].window_id)
    env = dict(os.environ)
    if "switch-client" not in argv:
        env.pop("TMUX", None)  # attaching from inside another tmux server
    if not sys.stdin.isatty():
        raise FacError("fac attach needs a terminal", hint=f"run it in a terminal, or: {' '.join(argv)}")
    os.execvpe(argv[0], argv, env)


@click.command()
@click.argument("worker")
@click.option("--rm", is_flag=True, help="Also remove the worktree and the branch (prints the last sha).")
@click.option("--force", is_flag=True, help="With --rm: discard uncommitted changes in the worktree.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def kill(worker: str, rm: bool, force: bool, as_json: bool) -> None:
    """Stop WORKER's window. Its worktree and branch stay unless --rm."""
    from supervisor import workers

    res = workers.kill(find_factory(), worker, rm=rm, force=force)
    if as_json:
        echo_json(res)
        return
    click.echo(f"stopped {worker}" + ("" if res["window_killed"] else " (it had no window)"))
    if res["removed"]:
        sha = res["last_sha"]
        last = f" (was {sha[:10]}; recover with `git branch {res['branch']} {sha}`)" if sha else ""
        click.echo(f"removed worktree and branch {res['branch']}{last}")
