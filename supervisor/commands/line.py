"""`fac line` and `fac line resume`: the line, stopped while main is red (jidoka)."""

from __future__ import annotations

import sys
import time

import click

from supervisor.commands import echo_json, find_factory
from supervisor.errors import EXIT_FAILED


@click.group("line", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
@click.pass_context
def line_cmd(ctx: click.Context, as_json: bool) -> None:
    """The line's state: running, or STOPPED because main is red (`fac line resume` restarts it).

    Exits 0 while the line runs and 1 while it is stopped (with --json too), so a script can
    wait on it: `until fac line; do sleep 10; done`.
    """
    if ctx.invoked_subcommand:
        return
    from supervisor import line

    st = line.get(find_factory())
    if as_json:
        echo_json(st.as_dict())
    elif st.stopped:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.since))
        click.echo(f"STOPPED since {when}: {st.reason}")
    else:
        click.echo("running")
    if st.stopped:
        sys.exit(EXIT_FAILED)


@line_cmd.command("resume")
def line_resume() -> None:
    """Restart a stopped line by hand (a green `fac verify` does it by itself)."""
    from supervisor import line

    if line.resume(find_factory(), by="human"):
        click.echo("line resumed")
    else:
        click.echo("the line was running")
