"""The `fac` command line: the root group, the one error-to-exit mapping and the lazy command registry.

Each command lives in a module of `supervisor.commands`, imported only when that command runs or
shows its help; `fac --help` lists them from the registry below without importing any of them.
"""

from __future__ import annotations

import importlib
from gettext import gettext as _
from typing import Any, NamedTuple, NoReturn

import click

from supervisor import __version__
from supervisor.errors import FacError
from supervisor.text import typed


class Lazy(NamedTuple):
    """A command known by name before it is imported: where it lives and its line in `fac --help`."""

    target: str  # "module:attribute" of the click command
    summary: str  # the first sentence of its help; tests/test_cli.py keeps the two equal
    hidden: bool = False


COMMANDS: dict[str, Lazy] = {
    "agent": Lazy(
        "supervisor.commands.agent:agent", "fac's built-in coding agent (the anthropic runtime).", hidden=True
    ),
    "answer": Lazy(
        "supervisor.commands.messages:answer",
        "Answer WORKER's open question: delivered to its inbox and pane; it goes back to work.",
    ),
    "approve": Lazy(
        "supervisor.commands.queue:approve",
        "The human gate: let BRANCH (or a worker's name) through a hold, or past the per-test ratchet.",
    ),
    "ask": Lazy("supervisor.commands.messages:ask", "Pull the andon cord: ask a human."),
    "attach": Lazy(
        "supervisor.commands.workers:attach",
        "Put your terminal on WORKER's window (switch-client when already inside tmux).",
    ),
    "check": Lazy("supervisor.commands.check:check_cmd", "Run the checks; exit 0 when green, 1 when red."),
    "config": Lazy(
        "supervisor.commands.factory:config_cmd",
        "Validate factory.toml and print the effective configuration (every problem at once).",
    ),
    "context": Lazy(
        "supervisor.commands.specs:context",
        "Print exactly what WORKER's agent is given (default in a pane: $FAC_WORKER).",
    ),
    "delta": Lazy(
        "supervisor.commands.specs:delta",
        "Requested changes to the specs: specs/deltas/NNNN-slug.md (without a subcommand: list them).",
    ),
    "demo": Lazy(
        "supervisor.commands.demo:demo",
        "Run the whole line offline: four scripted agents and erin (fac's built-in agent), the merge queue,"
        " real tmux and git.",
    ),
    "doctor": Lazy(
        "supervisor.commands.doctor:doctor",
        "Check the whole set-up and say what to fix; exit 0 when all is well, 1 otherwise.",
    ),
    "down": Lazy("supervisor.commands.factory:down", "Stop the factory's tmux session."),
    "env": Lazy(
        "supervisor.commands.env:env_cmd",
        "The system's development environment: which one is in use, its hash, what built it and when.",
    ),
    "hook": Lazy(
        "supervisor.commands.hook:hook",
        "A runtime reports its own state: fac knows instead of guessing from the screen.",
    ),
    "inbox": Lazy(
        "supervisor.commands.messages:inbox",
        "Messages for a worker: red verdicts, conflicts, merges, notes from humans.",
    ),
    "init": Lazy("supervisor.commands.factory:init", "Create a factory in DIRECTORY (default: here)."),
    "kill": Lazy("supervisor.commands.workers:kill", "Stop WORKER's window."),
    "line": Lazy(
        "supervisor.commands.line:line_cmd",
        "The line's state: running, or STOPPED because main is red (`fac line resume` restarts it).",
    ),
    "llm-review": Lazy(
        "supervisor.commands.review:llm_review",
        "The built-in judgment check: a model reviews the change against its delta and role rules.",
    ),
    "log": Lazy(
        "supervisor.commands.log:log",
        "The factory's event log (append-only): spawns, submissions, verdicts, merges, messages.",
    ),
    "queue": Lazy(
        "supervisor.commands.queue:queue",
        "The merge queue: list entries (default), `run` the bot, `wait` for it to drain.",
    ),
    "report": Lazy(
        "supervisor.commands.report:report",
        "Flow metrics from the event log: lead time, flow efficiency, first-pass yield, queue wait, MTTR.",
    ),
    "roles": Lazy(
        "supervisor.commands.roles:roles",
        "List the roles in roles/ (`fac roles new NAME` scaffolds one; `fac roles ls` lists too).",
    ),
    "send": Lazy(
        "supervisor.commands.messages:send",
        "Send TEXT to WORKER: stored in its inbox and pasted into its pane.",
    ),
    "spawn": Lazy(
        "supervisor.commands.workers:spawn",
        "Start a worker: branch fac/NAME, worktree .fac/worktrees/NAME, tmux window NAME.",
    ),
    "spec": Lazy(
        "supervisor.commands.specs:spec",
        "The specs in specs/current and specs/deltas (without a subcommand: list the spec files).",
    ),
    "state": Lazy(
        "supervisor.commands.specs:state",
        "The specs against reality: current statements with their status on main, open deltas, the desired"
        " state, and the drift.",
    ),
    "status": Lazy(
        "supervisor.commands.workers:status",
        "Workers with role, branch, state, process and window; the session and the queue.",
    ),
    "submit": Lazy(
        "supervisor.commands.queue:submit",
        "Queue the worker's branch at its current head for the merge queue.",
    ),
    "supervise": Lazy(
        "supervisor.commands.supervise:supervise",
        "Run the supervisor in the foreground (`fac up` runs it in the window `supervisor`).",
    ),
    "task": Lazy(
        "supervisor.commands.tasks:task",
        "Kanban: tasks wait here until the supervisor pulls them under the WIP limit.",
    ),
    "up": Lazy(
        "supervisor.commands.factory:up",
        "Start the factory's tmux session with fac's own windows (idempotent).",
    ),
    "verify": Lazy(
        "supervisor.commands.check:verify",
        "Run the gate on main itself: red stops the line (jidoka), green restarts it.",
    ),
}


def _usage_error(ctx: click.Context, e: click.UsageError) -> NoReturn:
    # click's own four-line "Usage: ... Error: ..." would break the one-line contract
    if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # `fac` alone: its help
        raise e
    click.echo(f"fac: error: {' '.join(e.format_message().split())}", err=True)
    click.echo(typed(f"  hint: see `{e.ctx.command_path if e.ctx else 'fac'} --help`"), err=True)
    ctx.exit(e.exit_code)


def _os_hint(e: OSError) -> str:
    import errno

    if e.errno == errno.ENOSPC:
        return "the disk is full: free some space and run the command again"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "fac may not write there: check the path's permissions (or that the disk is not read-only)"
    return "check the path named above, then run the command again"


def command_path(group: click.Group, ctx: click.Context, args: list[str]) -> tuple[str, ...]:
    """The command `args` would run, as click resolves it (("delta", "approve") for `fac delta approve 1`)."""
    path: list[str] = []
    cmd: click.Command = group
    while isinstance(cmd, click.Group) and args:
        name, sub, rest = cmd.resolve_command(ctx, args)
        if sub is None or name is None:
            break
        path.append(name)
        # resilient_parsing: no callbacks, no errors, no --help: only where the arguments lead
        ctx = sub.make_context(name, list(rest), parent=ctx, resilient_parsing=True)
        args = [*ctx._protected_args, *ctx.args] if isinstance(sub, click.Group) else []
        cmd = sub
    return tuple(path)


class FacGroup(click.Group):
    """Loads its commands from COMMANDS on first use; maps FacError to one or two lines and its exit code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            module, attr = COMMANDS[cmd_name].target.split(":")
            self.add_command(getattr(importlib.import_module(module), attr), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click.Group lays it out, with the summaries from the registry: nothing is imported.
        shown: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            cmd = self.commands.get(name)
            if cmd is None:
                entry = COMMANDS[name]
                cmd = click.Command(name, help=entry.summary, hidden=entry.hidden)
            if not cmd.hidden:
                shown.append((name, cmd))
        if shown:
            limit = formatter.width - 6 - max(len(name) for name, _cmd in shown)
            with formatter.section(_("Commands")):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in shown])

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:  # `fac --bogus`; a subcommand's errors reach invoke below
            _usage_error(ctx, e)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            from supervisor import identity

            who = identity.caller()
            if who.is_agent:  # an agent (through its channel, or a pane without one) runs only its commands
                identity.refuse(command_path(self, ctx, [*ctx._protected_args, *ctx.args]), who)
            return super().invoke(ctx)
        except FacError as e:
            click.echo(f"fac: error: {e.message}", err=True)
            if e.hint:  # spelled as the user's shell can run it (fac may not be on PATH)
                click.echo(f"  hint: {typed(e.hint)}", err=True)
            ctx.exit(e.exit_code)
        except click.UsageError as e:
            _usage_error(ctx, e)
        except OSError as e:  # the machine said no (a full disk, no permission): one line, never a traceback
            where = f": {e.filename}" if e.filename else ""
            click.echo(f"fac: error: {e.strerror or e}{where}", err=True)
            click.echo(f"  hint: {_os_hint(e)}", err=True)
            ctx.exit(2)
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

    \b
    Environment:
      FAC_TMUX_SOCKET  a private tmux server (tmux -L) instead of the default one
      FAC_ROOT         selects the factory (set in every worker pane, as are the ones below)
      FAC_WORKER       the worker a pane belongs to (submit, check, inbox, ask default to it)
      FAC_ROLE         that worker's role
      FAC_BRANCH       that worker's branch
      FAC_CONTEXT      the file with the agent's context (`fac context NAME` prints the same)
      FAC_TASK         the worker's task text, when it was spawned with one
      FAC_SOCKET       the worker's channel: fac in a pane runs its request through the supervisor
    """


def main() -> None:
    cli(prog_name="fac")


def prewarm() -> None:
    """Import and probe now what a `fac spawn` would on each run (the spawner, spawner.py, does this
    once, and its forked children start with it done)."""
    import importlib

    from supervisor import repo, sandbox, spawner, tmux

    ctx = click.Context(cli)
    for name in spawner.COMMANDS:
        cli.get_command(ctx, name)
    for module in (
        "sqlite3",
        "supervisor.workers",
        "supervisor.session",
        "supervisor.health",
        "supervisor.store",
        "supervisor.context",
        "supervisor.deltas",
        "supervisor.isolation",
        "supervisor.specs.source",
        "supervisor.specs.statements",
        "supervisor.runtimes.command",
        "supervisor.runtimes.claude",
        "supervisor.runtimes.anthropic",
    ):
        importlib.import_module(module)
    # Probes whose answers are cached for the process (and so for every child forked from it).
    repo.git_version()
    tmux.tmux_version()
    sandbox.agents_unconfined()


if __name__ == "__main__":
    main()
