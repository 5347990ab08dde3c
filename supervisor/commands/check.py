"""`fac check` (the inner loop, or the gate on a commit) and `fac verify` (the gate on main)."""

from __future__ import annotations

import sys
import threading
import time
from typing import TYPE_CHECKING

import click

from supervisor.commands import cache_option, echo_json, find_factory
from supervisor.errors import EXIT_FAILED

if TYPE_CHECKING:
    from supervisor.checks import CheckResult, Progress


def _progress(as_json: bool) -> Progress | None:
    """Each check's start and end on stderr as it happens (stdout keeps the summary, or the one JSON
    document of --json, which prints no progress)."""
    if as_json:
        return None
    lock = threading.Lock()

    def say(name: str, result: CheckResult | None) -> None:
        from supervisor.checks import progress_line

        with lock:
            click.echo(progress_line(name, result, time.strftime("%H:%M:%S")), err=True)

    return say


@click.command("check")
@click.option("--ref", help="Check this commit in a throw-away worktree (e.g. a red candidate's sha).")
@click.option("--worker", help="Check this worker's worktree in place (default in a pane: $FAC_WORKER).")
@click.option(
    "--stage",
    type=click.Choice(["inner", "gate"]),
    default="inner",
    show_default=True,
    help="inner: the fast loop, the tree's own checks; gate: main's checks plus the guards.",
)
@cache_option(False, "With --ref: reuse a stored result for the same tree and suite (--cache), or run.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def check_cmd(ref: str | None, worker: str | None, stage: str, cache: bool, as_json: bool) -> None:
    """Run the checks; exit 0 when green, 1 when red.

    Without --ref or --worker it checks the working tree you are in (in a worker's pane: that
    worker's worktree, uncommitted changes included).
    """
    from supervisor import checks, identity, verify, workers

    fac = find_factory()
    own = identity.caller().worker
    if not ref:
        worker = identity.own(worker)
    # Only a worker's check of its own tree is its state: a human (or another worker) checking W's
    # tree must not turn W into waiting-for-check (the supervisor would log W's exit a second time).
    with workers.waiting_for_check(fac, worker if not ref and worker == own else None):
        report = verify.check(
            fac, ref=ref, worker=worker, stage=stage, use_cache=cache, progress=_progress(as_json)
        )
    if as_json:
        echo_json(report.as_dict())
    else:
        v = report.verdict
        target = report.target[:10] if ref else report.target
        n = len(v.results)
        click.echo(
            f"fac check: {stage} stage on {target} (suite {report.suite}, {n} check{'' if n == 1 else 's'})"
        )
        for r in v.results:
            click.echo(f"  {checks.mark(r)}  {r.name:<28} {r.duration:6.1f}s")
            if not r.ok:
                for line in r.feedback.splitlines():
                    click.echo(f"        {line}")
                if r.log:
                    click.echo(f"        log: {r.log}")
        for note in report.notes:
            click.echo(f"  note: {note}")
        click.echo(f"  sandbox: {report.sandbox}")
        click.echo(f"  environment: {report.environment}")
        failed = v.failed()
        click.echo(
            "green"
            if v.ok
            else f"red: {len(failed)} required check(s) failed: {', '.join(r.name for r in failed)}"
        )
    if not report.verdict.ok:
        sys.exit(EXIT_FAILED)


@click.command()
@cache_option(True, "Reuse the verdict of a tree verified before (--cache), or run the checks again.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def verify(cache: bool, as_json: bool) -> None:
    """Run the gate on main itself: red stops the line (jidoka), green restarts it. Exit 1 when red."""
    from supervisor import line

    fac = find_factory()
    v = line.verify(fac, use_cache=cache, progress=_progress(as_json))
    if as_json:
        echo_json({**v.as_dict(), "line": line.get(fac).as_dict()})
    else:
        click.echo(
            f"{fac.main} {str(v.sha)[:10]}: {'green' if v.ok else 'RED'}" + (" (cached)" if v.cached else "")
        )
        for r in v.failed():
            click.echo(f"  FAIL {r.name}: " + (r.feedback.splitlines()[0] if r.feedback else ""))
        click.echo(f"line: {line.get(fac).state}")
    if not v.ok:
        sys.exit(EXIT_FAILED)
