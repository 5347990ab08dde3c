"""The `fac` command line: parse, call, print. Heavy modules are imported inside commands."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import click

from supervisor import __version__
from supervisor.errors import EXIT_FAILED, FacError
from supervisor.text import table


def _factory():
    from supervisor.factory import Factory

    return Factory.find()


def _json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def _ago(ts: float) -> str:
    s = max(0, int(time.time() - ts))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def _usage_error(ctx: click.Context, e: click.UsageError) -> NoReturn:
    # click's own four-line "Usage: ... Error: ..." would break the one-line contract
    if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # `fac` alone: its help
        raise e
    click.echo(f"fac: error: {' '.join(e.format_message().split())}", err=True)
    click.echo(f"  hint: see `{e.ctx.command_path if e.ctx else 'fac'} --help`", err=True)
    ctx.exit(e.exit_code)


class FacGroup(click.Group):
    """Maps FacError to a one- or two-line message and its exit code; never a traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:  # `fac --bogus`; a subcommand's errors reach invoke below
            _usage_error(ctx, e)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FacError as e:
            click.echo(f"fac: error: {e.message}", err=True)
            if e.hint:
                click.echo(f"  hint: {e.hint}", err=True)
            ctx.exit(e.exit_code)
        except click.UsageError as e:
            _usage_error(ctx, e)
        except KeyboardInterrupt:
            click.echo("fac: interrupted", err=True)
            ctx.exit(130)


@click.group(cls=FacGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="fac")
def cli() -> None:
    """fac runs a team of coding agents like a well-run factory line.

    Agents work in tmux windows, each on its own git worktree and branch; a deterministic merge
    queue lets only green work reach main and routes every red result back to its owner.

    \b
    Start:   fac init DIR; cd DIR; fac up; fac spawn worker --cmd "bash ./agent.sh"
    Watch:   fac status; fac attach NAME; fac log -f
    Stop:    fac kill NAME [--rm]; fac down [--rm]

    Environment: FAC_TMUX_SOCKET names a private tmux server (tmux -L); FAC_ROOT selects the
    factory (set in every worker pane together with FAC_WORKER, FAC_ROLE and FAC_BRANCH).
    """


# --- init / config ---


@cli.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sample", is_flag=True, help="Also copy fac's sample system and its pytest check.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def init(directory: Path, sample: bool, as_json: bool) -> None:
    """Create a factory in DIRECTORY (default: here).

    Makes a git repository on `main` with factory.toml, roles/, specs/, checks/,
    system-under-construction/ and project-container/, and a first commit. In an existing
    repository it adds only what is missing, never overwrites a file, and does not commit.
    """
    from supervisor import factory

    report = factory.init(directory, sample=sample)
    if as_json:
        _json({"root": str(report.root), "created": report.created, "kept": report.kept,
               "new_repo": report.new_repo, "commit": report.committed})  # fmt: skip
        return
    click.echo(f"factory at {report.root}" + (" (new git repository)" if report.new_repo else ""))
    for p in report.created:
        click.echo(f"  created  {p}")
    if report.kept:
        click.echo(f"  kept {len(report.kept)} existing file(s) untouched")
    if report.committed:
        click.echo(f"  committed {report.committed[:10]} on main")
    elif report.created:
        click.echo("  not committed: review, then `git add -A && git commit -m 'fac init'`")
    click.echo(f"next: cd {directory} && fac up")


@cli.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print the effective configuration as JSON.")
def config_cmd(as_json: bool) -> None:
    """Validate factory.toml and print the effective configuration.

    \b
    [factory] name         the factory's name (default: the directory's name)
    [factory] main         the branch the queue guards (default "main")
    [tmux] session         tmux session name (default "fac-<name>")
    [queue] parallel       checks run at once (default: CPU count)
    [queue] max_batch      branches tested together; 1 = serial queue (default 16)
    [queue] retries        reruns of a red single-branch candidate before blame (default 1)
    [queue] verify_main    run the gate on main after each merge (default false)
    [queue] approval_paths globs a branch may touch only after `fac approve` (default none)
    [supervisor] tick      seconds between reconcile passes when nothing happens (default 5)
    [supervisor] max_workers  the WIP limit for pulling tasks (default 4)
    [supervisor] auto_fix  spawn a fixer when main goes red (default false)
    [supervisor] fixer_command  the fixer's command when its role runs commands
    [supervisor] worker_command  what a worker pulled for an approved delta runs (command runtime)
    [supervisor] restart_delays  backoff of restarts in seconds (default [0, 5, 15, 60])
    [supervisor] crash_loop, crash_window  crashes within seconds that pull the andon cord (4, 900)
    [supervisor] red_limit red verdicts in a row before a human is asked (default 5)
    [supervisor] redeliver seconds before an unacknowledged message is pasted again (default 30)
    [supervisor] max_deliveries  pastes of one message at most (default 5)
    [context] max_chars    the budget of an agent's context, in characters (default 24000)
    [agents] model         the anthropic runtime's model (default $ANTHROPIC_MODEL, else claude-sonnet-4-6)
    [agents] base_url      the Messages API (default $ANTHROPIC_BASE_URL, else Anthropic's)
    [agents] max_tokens_per_worker   tokens in+out before the agent asks a human (default 1000000)
    [agents] max_turns     model calls before the agent asks a human (default 200)
    [agents] price_in      USD per million input tokens, for the cost in fac report (default 3)
    [agents] price_out     USD per million output tokens (default 15)
    [agents] run_timeout   seconds before the agent's run tool kills a command (default 300)
    [checks.NAME] run      command (string split like a shell would, or a list); no shell
    [checks.NAME] cwd      directory relative to the factory root (default ".")
    [checks.NAME] stage    "inner", "gate" or both (default both)
    [checks.NAME] timeout  seconds before the check's process group is killed (default 600)
    [checks.NAME] kind     "deterministic" or "judgment" (default deterministic)
    [checks.NAME] required false: a failure is reported but does not block (default true;
                           false for judgment checks)
    [checks.NAME] env      extra environment, e.g. { PYTHONHASHSEED = "0" }
    """
    from dataclasses import asdict

    fac = _factory()
    cfg = fac.config
    data = {"root": str(fac.root), "name": cfg.name, "main": cfg.main, "session": cfg.session,
            "queue": asdict(cfg.queue), "supervisor": asdict(cfg.supervisor),
            "context": {"max_chars": cfg.context_max_chars}, "agents": asdict(cfg.agents),
            "checks": [asdict(c) for c in cfg.checks]}  # fmt: skip
    if as_json:
        _json(data)
        return
    click.echo(f"factory {cfg.name} at {fac.root}: main={cfg.main} session={cfg.session}")

    def toml_like(section: dict[str, Any]) -> str:
        # As the keys are written in factory.toml: true/false, lists, quoted strings; unset keys are "-".
        return ", ".join(f"{k}={'-' if v is None else json.dumps(list(v) if isinstance(v, tuple) else v)}"
                         for k, v in section.items())  # fmt: skip

    click.echo("[queue] " + toml_like(asdict(cfg.queue)))
    click.echo("[supervisor] " + toml_like(asdict(cfg.supervisor)))
    click.echo(f"[context] max_chars={cfg.context_max_chars}")
    click.echo("[agents] " + toml_like(asdict(cfg.agents)))
    for c in cfg.checks:
        run = c.run if isinstance(c.run, str) else " ".join(c.run)
        click.echo(f"check {c.name}: {run} (cwd {c.cwd}, stage {'+'.join(c.stage)}, timeout {c.timeout:g}s)")


# --- session ---


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def up(as_json: bool) -> None:
    """Start the factory's tmux session with fac's own windows (idempotent)."""
    from supervisor import session

    fac = _factory()
    res = session.up(fac)
    if as_json:
        _json(res)
        return
    started = ", ".join(res["started"]) or "nothing new"
    click.echo(f"session {res['session']} is up (started: {started})")
    click.echo(f"watch it: {_attach_hint(res['session'])}")


def _attach_hint(session: str) -> str:
    sock = os.environ.get("FAC_TMUX_SOCKET")
    return f"tmux -L {sock} attach -t {session}" if sock else f"tmux attach -t {session}"


@cli.command()
@click.option("--rm", is_flag=True, help="Also remove every worker's worktree and branch.")
@click.option("--force", is_flag=True, help="With --rm: discard uncommitted changes in worktrees.")
@click.option("--json", "as_json", is_flag=True)
def down(rm: bool, force: bool, as_json: bool) -> None:
    """Stop the factory's tmux session. Worktrees and branches stay unless --rm."""
    from supervisor import session

    res = session.down(_factory(), rm=rm, force=force)
    if as_json:
        _json(res)
        return
    click.echo(f"session {res['session']} " + ("stopped" if res["was_running"] else "was not running"))
    if res["removed"]:
        click.echo(f"removed worktrees and branches of: {', '.join(res['removed'])}")


# --- workers ---


@cli.command()
@click.argument("role")
@click.option("--name", help="Worker name (default: ROLE-N).")
@click.option("--task", help="The task, given to the agent in its context (and $FAC_TASK).")
@click.option("--runtime", type=click.Choice(["command", "claude", "anthropic"]), help="Default: the role's.")
@click.option("--cmd", "command", help="Command line to run in the pane; implies --runtime command.")
@click.option("--base", help="Branch point (default: main).")
@click.option("--delta", help="Assign an approved delta (`fac delta ls`): it goes in-progress.")
@click.option("--json", "as_json", is_flag=True)
def spawn(role: str, name: str | None, task: str | None, runtime: str | None, command: str | None,
          base: str | None, delta: str | None, as_json: bool) -> None:  # fmt: skip
    """Start a worker: branch fac/NAME, worktree .fac/worktrees/NAME, tmux window NAME.

    All or nothing: if any step fails, whatever was created is removed again. The pane runs in
    the worktree with FAC_ROOT, FAC_WORKER, FAC_ROLE and FAC_BRANCH set.
    """
    from supervisor import workers

    if command is not None and runtime not in (None, "command"):
        raise FacError("--cmd runs the command runtime; it cannot be combined with --runtime " + runtime)
    res = workers.spawn(_factory(), role, name=name, task=task, runtime=runtime, command=command, base=base,
                        delta=delta)  # fmt: skip
    if as_json:
        _json(res)
        return
    click.echo(
        f"spawned {res['name']} ({res['role']}, {res['runtime']}) on {res['branch']} in {res['worktree']}"
    )
    click.echo(f"watch it: fac attach {res['name']}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until interrupted.")
@click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.2, 3600))
def status(as_json: bool, watch: bool, interval: float) -> None:
    """Workers with role, branch, state, process and window; the session and the queue."""
    from supervisor import status as statusmod

    fac = _factory()
    if as_json:
        _json(statusmod.collect(fac))
        return
    while True:
        text = statusmod.render(statusmod.collect(fac))
        if not watch:
            click.echo(text)
            return
        click.echo("\x1b[H\x1b[2J" + time.strftime("%H:%M:%S ") + text, nl=True)
        time.sleep(interval)


@cli.command()
@click.argument("worker")
def attach(worker: str) -> NoReturn:
    """Put your terminal on WORKER's window (switch-client when already inside tmux)."""
    fac = _factory()
    if worker not in ("supervisor", "merge-queue"):
        fac.worker(worker)
    panes = {p.window_name: p for p in fac.tmux.panes(fac.session)}
    if worker not in panes:
        raise FacError(f"{worker} has no window in session {fac.session}", hint="is the factory up? `fac up`")
    argv = fac.tmux.attach_argv(fac.session, panes[worker].window_id)
    env = dict(os.environ)
    if "switch-client" not in argv:
        env.pop("TMUX", None)  # attaching from inside another tmux server
    if not sys.stdin.isatty():
        raise FacError("fac attach needs a terminal", hint=f"run it in a terminal, or: {' '.join(argv)}")
    os.execvpe(argv[0], argv, env)


@cli.command()
@click.argument("worker")
@click.option("--rm", is_flag=True, help="Also remove the worktree and the branch (prints the last sha).")
@click.option("--force", is_flag=True, help="With --rm: discard uncommitted changes in the worktree.")
@click.option("--json", "as_json", is_flag=True)
def kill(worker: str, rm: bool, force: bool, as_json: bool) -> None:
    """Stop WORKER's window. Its worktree and branch stay unless --rm."""
    from supervisor import workers

    res = workers.kill(_factory(), worker, rm=rm, force=force)
    if as_json:
        _json(res)
        return
    click.echo(f"stopped {worker}" + ("" if res["window_killed"] else " (it had no window)"))
    if res["removed"]:
        last = f" (was {res['last_sha'][:10]}; recover with `git branch {res['branch']} {res['last_sha']}`)" if res[
            "last_sha"] else ""  # fmt: skip
        click.echo(f"removed worktree and branch {res['branch']}{last}")


@cli.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
@click.option("--worker", help="Only this worker's events.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many recent events to start with.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def log(follow: bool, worker: str | None, lines: int, as_json: bool) -> None:
    """The factory's event log (append-only): spawns, submissions, verdicts, merges, messages."""
    fac = _factory()
    store = fac.store
    events = store.events(worker=worker, limit=lines)
    if worker and not events and store.worker(worker) is None:
        raise FacError(
            f"no worker named {worker!r} and no events of one", hint=f"workers: {fac.worker_names()}"
        )
    last = events[-1].id if events else 0
    while True:
        for ev in events:
            if as_json:
                click.echo(json.dumps({"id": ev.id, "ts": ev.ts, "kind": ev.kind, "worker": ev.worker,
                                       "correlation": ev.correlation, "payload": ev.payload}))  # fmt: skip
            else:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev.ts))
                who = ev.worker or "-"
                corr = f" [{ev.correlation}]" if ev.correlation else ""
                detail = " ".join(
                    f"{k}={_short(v)}" for k, v in ev.payload.items() if v not in (None, [], "")
                )
                click.echo(f"{when}  {ev.kind:<14} {who:<14}{corr} {detail}".rstrip())
            last = ev.id
        if not follow:
            return
        sys.stdout.flush()
        time.sleep(0.3)
        events = store.events(worker=worker, after=last)


def _short(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    s = s.replace("\n", " ")
    return s if len(s) <= 60 else s[:57] + "..."


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def roles(ctx: click.Context, as_json: bool) -> None:
    """List the roles in roles/ (`fac roles new NAME` scaffolds one)."""
    if ctx.invoked_subcommand:
        return
    from supervisor import roles as rolesmod

    found = rolesmod.load_all(_factory().root)
    if as_json:
        _json([{"name": r.name, "description": r.description, "runtime": r.runtime, "writable": list(r.writable),
                "max_instances": r.max_instances, "path": str(r.path)} for r in found.values()])  # fmt: skip
        return
    rows = [[r.name, r.runtime, ",".join(r.writable), str(r.max_instances or "-"), r.description]
            for r in found.values()]  # fmt: skip
    click.echo(table(rows, ["ROLE", "RUNTIME", "WRITABLE", "MAX", "DESCRIPTION"]))


@roles.command("new")
@click.argument("name")
@click.option("--description", default="", help="One line saying what the role does.")
@click.option("--runtime", type=click.Choice(["command", "claude", "anthropic"]), default="command",
              show_default=True)  # fmt: skip
def roles_new(name: str, description: str, runtime: str) -> None:
    """Scaffold roles/NAME.md: front matter plus a prompt to edit. No code needed."""
    from supervisor import roles as rolesmod

    path = rolesmod.scaffold(_factory().root, name, description, runtime)
    click.echo(f"created {path}; edit its prompt, then `fac spawn {name} ...`")


# --- checks and the merge queue ---


def _worker_arg(worker: str | None, required: bool = True) -> str | None:
    w = worker or os.environ.get("FAC_WORKER")
    if required and not w:
        raise FacError(
            "which worker?", hint="pass --worker NAME, or run this inside a worker's pane (FAC_WORKER)"
        )
    return w


@cli.command("check")
@click.option("--ref", help="Check this commit in a throw-away worktree (e.g. a red candidate's sha).")
@click.option("--worker", help="Check this worker's worktree in place (default in a pane: $FAC_WORKER).")
@click.option("--stage", type=click.Choice(["inner", "gate"]), default="inner", show_default=True,
              help="inner: the fast loop, the tree's own checks; gate: main's checks plus the guards.")  # fmt: skip
@click.option("--cached", is_flag=True, help="With --ref: reuse a stored result for the same tree and suite.")
@click.option("--json", "as_json", is_flag=True)
def check_cmd(ref: str | None, worker: str | None, stage: str, cached: bool, as_json: bool) -> None:
    """Run the checks; exit 0 when green, 1 when red.

    Without --ref or --worker it checks the working tree you are in (in a worker's pane: that
    worker's worktree, uncommitted changes included).
    """
    from supervisor import verify

    fac = _factory()
    if not ref:
        worker = _worker_arg(worker, required=False)
    w = fac.store.worker(worker) if worker and not ref else None
    if w is not None:
        fac.store.update_worker(w.name, state="waiting-for-check")
    try:
        report = verify.check(fac, ref=ref, worker=worker, stage=stage, use_cache=cached)
    finally:
        if w is not None:
            now = fac.store.worker(w.name)
            if now is not None and now.state == "waiting-for-check":
                fac.store.update_worker(w.name, state=w.state)
    if as_json:
        _json(report.as_dict())
    else:
        v = report.verdict
        target = report.target[:10] if ref else report.target
        click.echo(
            f"fac check: {stage} stage on {target} (suite {report.suite}, {len(v.results)} check{'' if len(v.results) == 1 else 's'})"
        )
        for r in v.results:
            mark = "PASS" if r.ok else ("FAIL" if r.required else "warn")
            click.echo(f"  {mark}  {r.name:<28} {r.duration:6.1f}s")
            if not r.ok:
                for line in r.feedback.splitlines():
                    click.echo(f"        {line}")
                if r.log:
                    click.echo(f"        log: {r.log}")
        for note in report.notes:
            click.echo(f"  note: {note}")
        click.echo(f"  sandbox: {report.sandbox}")
        failed = v.failed()
        click.echo(
            "green"
            if v.ok
            else f"red: {len(failed)} required check(s) failed: {', '.join(r.name for r in failed)}"
        )
    if not report.verdict.ok:
        sys.exit(EXIT_FAILED)


@cli.command()
@click.option("--worker", help="Whose branch to queue (default in a pane: $FAC_WORKER).")
@click.option("--json", "as_json", is_flag=True)
def submit(worker: str | None, as_json: bool) -> None:
    """Queue the worker's branch at its current head for the merge queue.

    Only committed work is submitted. A newer submit replaces an older one still waiting.
    """
    from supervisor import submission

    name = _worker_arg(worker)
    assert name is not None
    sub = submission.submit(_factory(), name)
    if sub.dirty:
        click.echo(f"fac: warning: {name}'s worktree has uncommitted changes; they are not part of this "
                   "submission", err=True)  # fmt: skip
    if as_json:
        _json({"id": sub.id, "worker": name, "branch": sub.branch, "sha": sub.sha, "position": sub.position,
               "superseded": sub.superseded})  # fmt: skip
        return
    extra = f"; replaces entry {', '.join(map(str, sub.superseded))}" if sub.superseded else ""
    click.echo(f"queued {sub.branch} at {sub.sha[:10]} as entry {sub.id} (position {sub.position}){extra}")
    click.echo("the verdict arrives in your inbox (fac inbox) and in this pane")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--all", "show_all", is_flag=True, help="Include superseded and cancelled entries.")
@click.pass_context
def queue(ctx: click.Context, as_json: bool, show_all: bool) -> None:
    """The merge queue: list entries (default), `run` the bot, `wait` for it to drain."""
    if ctx.invoked_subcommand:
        return
    from supervisor.merge_queue import queue_rows

    rows = queue_rows(_factory(), all_entries=show_all)
    if as_json:
        _json(rows)
        return
    if not rows:
        click.echo("the queue is empty")
        return
    click.echo(table([[str(r["id"]), r["worker"], r["branch"], r["sha"][:10], r["state"], str(r["attempts"]),
                       r["last_verdict"], _ago(r["updated_at"])] for r in rows],
                     ["ID", "WORKER", "BRANCH", "SHA", "STATE", "ATTEMPTS", "LAST VERDICT", "AGE"]))  # fmt: skip


@queue.command("run")
@click.option("--once", is_flag=True, help="Exit when nothing is pending instead of waiting for submissions.")
@click.option("--max-batch", type=click.IntRange(1), help="Override [queue] max_batch (1 = serial).")
@click.option("--no-cache", is_flag=True, help="Never reuse stored check results.")
def queue_run(once: bool, max_batch: int | None, no_cache: bool) -> None:
    """Run the merge queue (`fac up` starts it in the window `merge-queue`)."""
    from supervisor.merge_queue import MergeQueue

    def say(msg: str) -> None:
        click.echo(f"{time.strftime('%H:%M:%S')} {msg}")
        sys.stdout.flush()

    mq = MergeQueue(_factory(), max_batch=max_batch, use_cache=not no_cache, say=say)
    stats = mq.run(once=once)
    say(
        "done: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.items())) if stats else "done: nothing to do"
    )


@queue.command("wait")
@click.option("--timeout", type=click.FloatRange(0), default=600, show_default=True, help="Seconds.")
def queue_wait(timeout: float) -> None:
    """Block until nothing is queued or testing; exit 1 on timeout."""
    fac = _factory()
    deadline = time.monotonic() + timeout
    while True:
        pending = fac.store.queue(("queued", "testing"))
        if not pending:
            return
        if time.monotonic() >= deadline:
            click.echo(f"fac: timed out after {timeout:g}s with {len(pending)} entr{'y' if len(pending) == 1 else 'ies'}"
                       " pending", err=True)  # fmt: skip
            sys.exit(EXIT_FAILED)
        time.sleep(0.2)


@cli.command()
@click.option("--worker", help="Whose inbox (default in a pane: $FAC_WORKER).")
@click.option("--all", "show_all", is_flag=True, help="Also messages already read.")
@click.option("--id", "mid", type=int, help="Show one message in full.")
@click.option("--wait", "wait_s", type=click.FloatRange(0), help="Block up to this many seconds for an unread "
              "message (exit 1 if none came).")  # fmt: skip
@click.option(
    "--ack", "ack_ids", type=int, multiple=True, help="Acknowledge message ID (a receipt); repeatable."
)
@click.option("--json", "as_json", is_flag=True)
def inbox(worker: str | None, show_all: bool, mid: int | None, wait_s: float | None, ack_ids: tuple[int, ...],
          as_json: bool) -> None:  # fmt: skip
    """Messages for a worker: red verdicts, conflicts, merges, notes from humans.

    Shown messages are marked read; without --all only unread ones are shown. Agents can block
    on their next verdict with `fac inbox --wait 600`.
    """
    from supervisor import messages

    fac = _factory()
    name = _worker_arg(worker)
    assert name is not None
    if not fac.store.messages(name):
        fac.worker(name)  # a removed worker's messages stay readable
    if ack_ids:
        acked = messages.ack(fac, name, list(ack_ids))
        if as_json:
            _json({"acked": acked})
        else:
            click.echo(f"acknowledged {', '.join(map(str, acked))}")
        return
    if mid is not None:
        m = fac.store.message(mid)
        msgs = [m] if m and m.worker == name else []
        if not msgs:
            raise FacError(f"{name} has no message {mid}")
    else:
        msgs = fac.store.messages(name, unread_only=not show_all)
        if wait_s is not None and not msgs:
            deadline = time.monotonic() + wait_s
            while not msgs and time.monotonic() < deadline:
                time.sleep(0.2)
                msgs = fac.store.messages(name, unread_only=True)
            if not msgs:
                click.echo(f"no message for {name} within {wait_s:g}s", err=True)
                sys.exit(EXIT_FAILED)
    fac.store.mark_messages([m.id for m in msgs], "read_at")
    if msgs:
        messages.ack(fac, name, [m.id for m in msgs])  # reading it is the receipt
    if as_json:
        _json([{"id": m.id, "ts": m.ts, "sender": m.sender, "kind": m.kind, "body": m.body,
                "delivered_at": m.delivered_at, "read_at": m.read_at} for m in msgs])  # fmt: skip
        return
    if not msgs:
        click.echo(f"no {'' if show_all else 'unread '}messages for {name}")
        return
    for m in msgs:
        when = time.strftime("%H:%M:%S", time.localtime(m.ts))
        click.echo(f"--- message {m.id} from {m.sender} ({m.kind}) at {when}")
        click.echo(m.body)


@cli.command()
@click.argument("worker")
@click.argument("text")
@click.option("--json", "as_json", is_flag=True)
def send(worker: str, text: str, as_json: bool) -> None:
    """Send TEXT to WORKER: stored in its inbox and pasted into its pane. TEXT "-" reads stdin."""
    from supervisor import messages

    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        raise FacError(
            "the message is empty", hint=f'fac send {worker} "text", or pipe it in: ... | fac send {worker} -'
        )
    d = messages.send(_factory(), worker, text, sender="human", kind="note")
    if as_json:
        _json({"id": d.id, "pasted": d.pasted, "reason": d.reason})
        return
    where = "inbox and pane" if d.pasted else f"inbox (not pasted: {d.reason})"
    click.echo(f"sent message {d.id} to {worker}: {where}")


@cli.command()
@click.option("--keep", is_flag=True, help="Leave the factory and its tmux server running to explore.")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="Build the demo factory here (default: a new temp dir, removed afterwards).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def demo(keep: bool, directory: Path | None, as_json: bool) -> None:
    """Run the whole line offline: four scripted agents, the merge queue, real tmux and git.

    alice merges; bob is red, reads the failing test in his inbox, fixes and merges; carol and
    dave edit the same line: one merges, the other gets the conflict, merges main and merges.
    Uses a private tmux socket; exits 1 if the story did not happen as told.
    """
    from supervisor import demo as demomod

    if directory is not None and directory.exists() and any(directory.iterdir()):
        raise FacError(f"{directory} is not empty", hint="pass a new or empty directory to --dir")
    sys.exit(demomod.main_entry(keep, directory, as_json))


# --- the supervisor: liveness, andon, jidoka, kanban, flow ---


@cli.command()
@click.option("--no-dashboard", is_flag=True, help="Print events as lines instead of the live table.")
def supervise(no_dashboard: bool) -> None:
    """Run the supervisor in the foreground (`fac up` runs it in the window `supervisor`).

    Restarts crashed agents with backoff, pastes unacknowledged messages again, stops the line
    when main is red, pulls waiting tasks under the WIP limit, and shows the dashboard.
    """
    from supervisor.daemon import Supervisor
    from supervisor.tmux import LiveTmux

    fac = _factory()
    fac.tmux = LiveTmux()  # it runs for hours: libtmux's objects, imported once
    if no_dashboard or not sys.stdout.isatty():

        def say(msg: str) -> None:
            click.echo(f"{time.strftime('%H:%M:%S')} {msg}")
            sys.stdout.flush()

        Supervisor(fac, say=say).run()
        return
    from rich.console import Console
    from rich.live import Live

    from supervisor import dashboard

    recent: list[str] = []

    def note(msg: str) -> None:
        recent.append(f"{time.strftime('%H:%M:%S')} {msg}")
        del recent[:-8]

    with Live(console=Console(), auto_refresh=False, screen=False) as live:

        def redraw() -> None:
            from rich.console import Group
            from rich.text import Text

            live.update(Group(dashboard.render(dashboard.snapshot(fac)), Text("\n".join(recent), style="dim")),
                        refresh=True)  # fmt: skip

        Supervisor(fac, say=note, on_reconcile=redraw).run()


@cli.command()
@click.argument("event", type=click.Choice(["session-start", "prompt", "working", "stop", "idle", "notification",
                                            "ack"]))  # fmt: skip
@click.argument("ids", nargs=-1, type=int)
@click.option("--worker", help="Default in a pane: $FAC_WORKER.")
@click.option("--check", is_flag=True, help="With stop: run the inner checks and block the stop while red.")
@click.option("--json", "as_json", is_flag=True)
def hook(event: str, ids: tuple[int, ...], worker: str | None, check: bool, as_json: bool) -> None:
    """A runtime reports its own state: fac knows instead of guessing from the screen.

    Claude Code's hooks call this with their JSON on stdin (session_id is kept so a restart can
    resume). `fac hook ack ID...` is a message receipt.
    """
    from supervisor import daemon

    name = _worker_arg(worker)
    assert name is not None
    data = daemon.read_hook_input()
    if ids:
        data["ids"] = list(ids)
    res = daemon.hook(_factory(), name, event, data, check=check)
    if as_json:
        _json(res)
    elif res.get("stdout"):
        click.echo(res["stdout"])


@cli.command()
@click.argument("question")
@click.option("--worker", help="Default in a pane: $FAC_WORKER.")
def ask(question: str, worker: str | None) -> None:
    """Pull the andon cord: ask a human. The worker shows as needs-human until answered."""
    from supervisor import andon

    name = _worker_arg(worker)
    assert name is not None
    andon.ask(_factory(), name, question)
    click.echo(f"asked: a human will answer with `fac answer {name} ...`; the answer arrives in your inbox")


@cli.command()
@click.argument("worker")
@click.argument("text")
def answer(worker: str, text: str) -> None:
    """Answer WORKER's open question: delivered to its inbox and pane; it goes back to work."""
    from supervisor import andon

    d = andon.answer(_factory(), worker, text)
    click.echo(f"answered {worker} (message {d.id}{'' if d.pasted else ', not pasted: ' + d.reason})")


@cli.group("line", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def line_cmd(ctx: click.Context, as_json: bool) -> None:
    """The line's state: running, or STOPPED because main is red (`fac line resume` restarts it)."""
    if ctx.invoked_subcommand:
        return
    from supervisor import line

    st = line.get(_factory())
    if as_json:
        _json(st.as_dict())
        return
    if st.stopped:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.since))
        click.echo(f"STOPPED since {when}: {st.reason}")
    else:
        click.echo("running")


@line_cmd.command("resume")
def line_resume() -> None:
    """Restart a stopped line by hand (a green `fac verify` does it by itself)."""
    from supervisor import line

    if line.resume(_factory(), by="human"):
        click.echo("line resumed")
    else:
        click.echo("the line was running")


@cli.command()
@click.option("--no-cache", is_flag=True, help="Run the checks even if this tree was verified before.")
@click.option("--json", "as_json", is_flag=True)
def verify(no_cache: bool, as_json: bool) -> None:
    """Run the gate on main itself: red stops the line (jidoka), green restarts it. Exit 1 when red."""
    from supervisor import line

    fac = _factory()
    v = line.verify(fac, use_cache=not no_cache)
    if as_json:
        _json({**v.as_dict(), "line": line.get(fac).as_dict()})
    else:
        click.echo(
            f"{fac.main} {str(v.sha)[:10]}: {'green' if v.ok else 'RED'}" + (" (cached)" if v.cached else "")
        )
        for r in v.failed():
            click.echo(f"  FAIL {r.name}: " + (r.feedback.splitlines()[0] if r.feedback else ""))
        click.echo(f"line: {line.get(fac).state}")
    if not v.ok:
        sys.exit(EXIT_FAILED)


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def task(ctx: click.Context, as_json: bool) -> None:
    """Kanban: tasks wait here until the supervisor pulls them under the WIP limit."""
    if ctx.invoked_subcommand:
        return
    from dataclasses import asdict

    from supervisor import tasks

    fac = _factory()
    ts = tasks.all_tasks(fac)
    if as_json:
        _json([asdict(t) for t in ts])
        return
    if not ts:
        click.echo('no tasks: add one with fac task add "..."')
        return
    click.echo(table([[str(t.id), t.state, t.role, t.worker or "-", t.text[:60]] for t in ts],
                     ["ID", "STATE", "ROLE", "WORKER", "TASK"]))  # fmt: skip
    click.echo(f"WIP {tasks.wip(fac)}/{fac.config.supervisor.max_workers}")


@task.command("add")
@click.argument("text")
@click.option("--role", default="worker", show_default=True)
@click.option("--runtime", type=click.Choice(["command", "claude", "anthropic"]))
@click.option("--cmd", "command", help="For the command runtime: the command the worker runs.")
@click.option("--delta", help="The delta this task implements.")
def task_add(text: str, role: str, runtime: str | None, command: str | None, delta: str | None) -> None:
    """Queue a task; a worker is spawned for it when the factory is under [supervisor] max_workers."""
    from supervisor import tasks

    if command is not None and runtime not in (None, "command"):
        raise FacError(f"--cmd runs the command runtime; it cannot be combined with --runtime {runtime}")
    tid = tasks.add(_factory(), text, role=role, runtime="command" if command else runtime, command=command,
                    delta=delta)  # fmt: skip
    click.echo(f"task {tid} queued; the supervisor pulls it when a WIP slot is free")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def report(as_json: bool) -> None:
    """Flow metrics from the event log: lead time, flow efficiency, first-pass yield, queue wait, MTTR."""
    from supervisor import report as reportmod

    data = reportmod.build(_factory())
    if as_json:
        _json(data)
    else:
        click.echo(reportmod.render(data))


from supervisor.commands.specs import COMMANDS as _SPEC_COMMANDS  # noqa: E402  (delta, state, spec, context)

for _command in _SPEC_COMMANDS:
    cli.add_command(_command)

from supervisor.commands.agent import COMMANDS as _AGENT_COMMANDS  # noqa: E402  (agent run: the anthropic runtime)

for _command in _AGENT_COMMANDS:
    cli.add_command(_command)


@cli.command()
@click.argument("branch")
def approve(branch: str) -> None:
    """The human gate: let BRANCH (or a worker's name) through `[queue] approval_paths`.

    Approves the exact commit waiting in the queue; a later push needs a new approval.
    Agents cannot approve.
    """
    from supervisor.merge_queue import approve as approve_entries

    if os.environ.get("FAC_WORKER"):
        raise FacError("agents cannot approve", hint="a human runs `fac approve` outside the worker panes")
    ids = approve_entries(_factory(), branch)
    click.echo(
        f"approved queue entr{'y' if len(ids) == 1 else 'ies'} {', '.join(map(str, ids))}; back in line"
    )


@cli.command("llm-review")
def llm_review() -> None:
    """The built-in judgment check: a model reviews the change against its delta and role rules.

    Use it as a check: [checks.review] run = "fac llm-review", kind = "judgment". Exit 0 pass,
    1 fail. Without ANTHROPIC_API_KEY it prints "skipped: no API key" and passes unless the check
    is required (required = true).
    """
    from supervisor import review

    sys.exit(review.main(Path.cwd()))


def main() -> None:
    cli(prog_name="fac")


if __name__ == "__main__":
    main()
