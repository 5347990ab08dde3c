"""`fac init`, `fac config`, `fac up` and `fac down`: the factory on disk and its tmux session."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from supervisor.commands import echo_json, find_factory
from supervisor.text import typed


@click.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--sample", is_flag=True, help="Also copy fac's sample system and its pytest check.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def init(directory: Path, sample: bool, as_json: bool) -> None:
    """Create a factory in DIRECTORY (default: here).

    Makes a git repository on `main` with factory.toml, roles/, specs/, checks/,
    system-under-construction/ and project-container/, and a first commit. In an existing
    repository it adds only what is missing, never overwrites a file, and does not commit.
    Without --sample the factory has no check yet, and the queue holds every submission until
    main has a gate check (or [queue] allow_no_checks = true): init says how to add one.
    """
    from supervisor import checks
    from supervisor import factory as factorymod

    report = factorymod.init(directory, sample=sample)
    gate = checks.suite_from_dir(report.root).for_stage("gate")
    if as_json:
        echo_json(
            {
                "root": str(report.root),
                "created": report.created,
                "kept": report.kept,
                "new_repo": report.new_repo,
                "commit": report.committed,
                "not_committed": report.not_committed,
                "gate_checks": [c.name for c in gate],
            }
        )
        return
    click.echo(f"factory at {report.root}" + (" (new git repository)" if report.new_repo else ""))
    for p in report.created:
        click.echo(f"  created  {p}")
    if report.kept:
        click.echo(f"  kept {len(report.kept)} existing file(s) untouched")
    if report.committed:
        click.echo(f"  committed {report.committed[:10]} on main")
    if report.not_committed:
        shown = ", ".join(report.not_committed[:5]) + (" ..." if len(report.not_committed) > 5 else "")
        click.echo(f"  not committed (your own files, yours to commit): {shown}")
    elif report.created:
        click.echo("  not committed: review, then `git add -A && git commit -m 'fac init'`")
    if not gate:
        click.echo(typed(NO_CHECKS_NOTE))
    click.echo(typed(f"next: cd {directory} && fac up"))


NO_CHECKS_NOTE = """\
  no checks yet: the merge queue holds every submission until main has a gate check, since zero
  checks would call anything green. Add one to factory.toml and commit it on main, e.g.
      [checks.tests]
      run = "python -m pytest -q"
      cwd = "system-under-construction"
  or put an executable in checks/ (exit 0 pass, 1 fail); `fac init --sample` comes with one.
  To merge untested anyway: [queue] allow_no_checks = true"""


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print the effective configuration as JSON.")
def config_cmd(as_json: bool) -> None:
    """Validate factory.toml and print the effective configuration (every problem at once).

    \b
    [factory] name         the factory's name (default: the directory's name)
    [factory] main         the branch the queue guards (default "main")
    [factory] remote       a git remote whose main is the truth: fetched before each round, landed
                           with push --force-with-lease (default none: the local main)
    [tmux] session         tmux session name (default "fac-<name>-<hash of the factory's path>")
    [queue] parallel       checks run at once (default: CPU count)
    [queue] max_batch      branches tested together; 1 = serial queue (default 16)
    [queue] retries        reruns of a red single-branch candidate before blame (default 1)
    [queue] verify_main    run the gate on main after each merge (default false)
    [queue] approval_paths globs a branch may touch only after `fac approve` (default none)
    [queue] allow_no_checks  merge while main has no gate check, untested (default false: hold)
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
    [sandbox] agent_network  agents' panes keep the network (default true; false cuts it off)
    [executor] kind        "local" (subprocesses, default) or "dask" (one task per candidate on a
                           Dask cluster; needs [factory] remote and pip install "fac[dask]")
    [executor] scheduler   the Dask scheduler's address, tcp://HOST:8786 (kind = "dask")
    [executor] slots       candidates under test at once, speculative (default: CPU count; 1 = one at a time)
    [checks.NAME] run      command (string split like a shell would, or a list); no shell, so
                           &&, ||, |, ;, >, <, `, $( and a leading VAR=x are refused: use
                           run = "bash -c '...'" or env = { VAR = "x" }
    [checks.NAME] cwd      directory relative to the factory root (default ".")
    [checks.NAME] stage    "inner", "gate" or both (default both)
    [checks.NAME] timeout  seconds before the check's process group is killed (default 600)
    [checks.NAME] kind     "deterministic" or "judgment" (default deterministic)
    [checks.NAME] required false: a failure is reported but does not block (default true;
                           false for judgment checks)
    [checks.NAME] env      extra environment, e.g. { PYTHONHASHSEED = "0" }
    """
    from dataclasses import asdict

    fac = find_factory()
    cfg = fac.config
    data = {
        "root": str(fac.root),
        "name": cfg.name,
        "main": cfg.main,
        "remote": cfg.remote,
        "session": cfg.session,
        "queue": asdict(cfg.queue),
        "executor": asdict(cfg.executor),
        "supervisor": asdict(cfg.supervisor),
        "context": {"max_chars": cfg.context_max_chars},
        "agents": asdict(cfg.agents),
        "checks": [asdict(c) for c in cfg.checks],
    }
    if as_json:
        echo_json(data)
        return
    remote = f" remote={cfg.remote}" if cfg.remote else ""
    click.echo(f"factory {cfg.name} at {fac.root}: main={cfg.main}{remote} session={cfg.session}")

    from supervisor.runtimes.anthropic.client import DEFAULT_MODEL

    # What an unset key means: its default (or the environment that overrides it), else "(none)".
    unset = {
        "model": _from_env("ANTHROPIC_MODEL", DEFAULT_MODEL),
        "base_url": _from_env("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
    }

    def toml_like(section: dict[str, Any]) -> str:
        # As the keys are written in factory.toml: true/false, lists, quoted strings.
        def shown(k: str, v: Any) -> str:
            if v is None:
                return unset.get(k, "(none)")
            return json.dumps(list(v) if isinstance(v, tuple) else v)

        return ", ".join(f"{k}={shown(k, v)}" for k, v in section.items())

    click.echo("[queue] " + toml_like(asdict(cfg.queue)))
    click.echo("[executor] " + toml_like(asdict(cfg.executor)))
    click.echo("[supervisor] " + toml_like(asdict(cfg.supervisor)))
    click.echo(f"[context] max_chars={cfg.context_max_chars}")
    click.echo("[agents] " + toml_like(asdict(cfg.agents)))
    click.echo("[sandbox] " + toml_like(asdict(cfg.sandbox)))
    for c in cfg.checks:
        run = c.run if isinstance(c.run, str) else " ".join(c.run)
        click.echo(f"check {c.name}: {run} (cwd {c.cwd}, stage {'+'.join(c.stage)}, timeout {c.timeout:g}s)")


def _from_env(var: str, default: str) -> str:
    value = os.environ.get(var)
    return f"{json.dumps(value)} (from ${var})" if value else f"{json.dumps(default)} (default)"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def up(as_json: bool) -> None:
    """Start the factory's tmux session with fac's own windows (idempotent)."""
    from supervisor import session

    fac = find_factory()
    res = session.up(fac)
    if as_json:
        echo_json(res)
        return
    started = ", ".join(res["started"]) or "nothing new"
    click.echo(f"session {res['session']} is up (started: {started})")
    if res["agents_isolation"]["warning"]:
        click.echo(f"warning: {res['agents_isolation']['warning']}")
    click.echo(f"watch it: {_attach_hint(res['session'])}")


def _attach_hint(session: str) -> str:
    sock = os.environ.get("FAC_TMUX_SOCKET")
    return f"tmux -L {sock} attach -t {session}" if sock else f"tmux attach -t {session}"


@click.command()
@click.option(
    "--rm", is_flag=True, help="Also remove every worker's worktree and branch (prints each last sha)."
)
@click.option(
    "--force",
    is_flag=True,
    help="With --rm: discard uncommitted changes and drop branches main does not have.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def down(rm: bool, force: bool, as_json: bool) -> None:
    """Stop the factory's tmux session. Worktrees and branches stay unless --rm.

    --rm refuses while a worktree has uncommitted changes or a branch has commits that main does
    not have; --force drops them, printing each branch's last sha so `git branch` can bring it back.
    A tmux session of the same name that this factory did not create is never touched.
    """
    from supervisor import session

    res = session.down(find_factory(), rm=rm, force=force)
    if as_json:
        echo_json(res)
        return
    click.echo(f"session {res['session']} " + ("stopped" if res["was_running"] else "was not running"))
    for d in res["dropped"]:
        sha = d["last_sha"]
        last = f" (was {sha[:10]}; recover with `git branch {d['branch']} {sha}`)" if sha else ""
        click.echo(f"removed {d['worker']}'s worktree and branch {d['branch']}{last}")
