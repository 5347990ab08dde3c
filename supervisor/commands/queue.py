"""`fac submit`, `fac queue` (list, run, wait) and `fac approve`: the merge queue."""

from __future__ import annotations

import os
import sys
import time

import click

from supervisor.commands import ago, cache_option, echo_json, find_factory, timestamped, worker_arg
from supervisor.errors import EXIT_FAILED
from supervisor.text import short_sha, table


@click.command()
@click.option(
    "--worker", help="Whose branch to queue (default: $FAC_WORKER in a pane, else the worktree you are in)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def submit(worker: str | None, as_json: bool) -> None:
    """Queue the worker's branch at its current head for the merge queue.

    Only committed work is submitted. A newer submit replaces an older one still waiting. Run
    inside a worker's worktree (.fac/worktrees/NAME), it submits that worker's branch.
    """
    from pathlib import Path

    from supervisor import identity, submission

    fac = find_factory()
    name = worker_arg(identity.own(worker) or fac.worker_at(Path.cwd()))
    sub = submission.submit(fac, name)
    if sub.dirty:
        click.echo(
            f"fac: warning: {name}'s worktree has uncommitted changes; they are not part of this submission",
            err=True,
        )
    if as_json:
        echo_json(
            {
                "id": sub.id,
                "worker": name,
                "branch": sub.branch,
                "sha": sub.sha,
                "position": sub.position,
                "superseded": sub.superseded,
            }
        )
        return
    extra = f"; replaces entry {', '.join(map(str, sub.superseded))}" if sub.superseded else ""
    click.echo(f"queued {sub.branch} at {sub.sha[:10]} as entry {sub.id} (position {sub.position}){extra}")
    click.echo("the verdict arrives in your inbox (fac inbox) and in this pane")


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
@click.option("--all", "show_all", is_flag=True, help="Include superseded and cancelled entries.")
@click.pass_context
def queue(ctx: click.Context, as_json: bool, show_all: bool) -> None:
    """The merge queue: list entries (default), `run` the bot, `wait` for it to drain.

    A testing entry shows how long it has been under test and the checks running now (--json:
    `testing_since` and `testing_since_iso`, `elapsed` in seconds, `running`, `progress`).
    """
    if ctx.invoked_subcommand:
        return
    from supervisor.queue import queue_rows

    rows = queue_rows(find_factory(), all_entries=show_all)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo("the queue is empty")
        return
    cells = [
        [
            str(r["id"]),
            r["worker"],
            r["branch"],
            short_sha(r["sha"]),
            r["state"],
            str(r["attempts"]),
            r["progress"] or r["last_verdict"],
            ago(r["updated_at"]),
        ]
        for r in rows
    ]
    click.echo(table(cells, ["ID", "WORKER", "BRANCH", "SHA", "STATE", "ATTEMPTS", "LAST VERDICT", "AGE"]))


@queue.command("run")
@click.option("--once", is_flag=True, help="Exit when nothing is pending instead of waiting for submissions.")
@click.option("--max-batch", type=click.IntRange(1), help="Override [queue] max_batch (1 = serial).")
@cache_option(True, "Reuse stored check results for a tree already judged (--cache), or never (--no-cache).")
@click.option(
    "--slots",
    type=click.IntRange(1),
    help="Override [executor] slots: candidates under test at once (1 = one).",
)
def queue_run(once: bool, max_batch: int | None, cache: bool, slots: int | None) -> None:
    """Run the merge queue (`fac up` starts it in the window `merge-queue`).

    In its own window it also restarts a dead supervisor window (each restart is an event in `fac log`).
    """
    from supervisor import health
    from supervisor.queue import MergeQueue

    keep = (health.SUPERVISOR_WINDOW,) if os.environ.get(health.WINDOW_ENV) == health.QUEUE_WINDOW else ()
    mq = MergeQueue(
        find_factory(), max_batch=max_batch, use_cache=cache, say=timestamped, keep=keep, slots=slots
    )
    stats = mq.run(once=once)
    timestamped(
        "done: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) if stats else "done: nothing to do"
    )


@queue.command("wait")
@click.option("--timeout", type=click.FloatRange(0), default=600, show_default=True, help="Seconds.")
def queue_wait(timeout: float) -> None:
    """Block until nothing is queued or testing; exit 1 on timeout."""
    fac = find_factory()
    deadline = time.monotonic() + timeout
    while True:
        pending = fac.store.queue(("queued", "testing"))
        if not pending:
            return
        if time.monotonic() >= deadline:
            n = len(pending)
            click.echo(
                f"fac: timed out after {timeout:g}s with {n} entr{'y' if n == 1 else 'ies'} pending", err=True
            )
            sys.exit(EXIT_FAILED)
        time.sleep(0.2)


@click.command()
@click.argument("branch")
def approve(branch: str) -> None:
    """The human gate: let BRANCH (or a worker's name) through a hold, or past the per-test ratchet.

    A branch is held when it changes test infrastructure (conftest.py, pytest configuration or its
    addopts options, .gitattributes) or a path of `[queue] approval_paths`; `fac queue` and
    `fac status` say why. Approves the exact commit waiting in the queue; a later push needs a new
    approval. When the branch's latest head came back red from the ratchet (a test main passes is
    missing, skipped or failing, or main's copy of a test file it changes fails), approves exactly
    those tests for that commit and queues it again.
    Agents cannot approve.
    """
    from supervisor import queue

    queue.refuse_agent_approval()
    ids = queue.approve(find_factory(), branch)
    click.echo(
        f"approved queue entr{'y' if len(ids) == 1 else 'ies'} {', '.join(map(str, ids))}; back in line"
    )
