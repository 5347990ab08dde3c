"""`fac doctor`: check the whole set-up and say what to fix."""

from __future__ import annotations

import sys

import click

from supervisor.commands import echo_json
from supervisor.errors import EXIT_FAILED
from supervisor.text import typed


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable findings.")
def doctor(as_json: bool) -> None:
    """Check the whole set-up and say what to fix; exit 0 when all is well, 1 otherwise.

    \b
    The machine: git and tmux versions, bubblewrap, a container engine.
    The factory (when run inside one): factory.toml, the main branch, the store, the gate checks
    on main, the tmux session, and fac's own processes (the supervisor and the merge queue).
    A warning is worth reading but does not fail.
    """
    from supervisor import doctor as doctormod

    root, findings = doctormod.examine()
    ok = doctormod.healthy(findings)
    if as_json:
        echo_json(
            {"ok": ok, "root": str(root) if root else None, "findings": [f.as_dict() for f in findings]}
        )
    else:
        mark = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
        for f in findings:
            click.echo(f"{mark[f.level]}  {f.name}: {f.detail}")
            if f.fix and f.level != "ok":
                click.echo(f"      fix: {typed(f.fix)}")
        click.echo("all is well" if ok else "something needs fixing (see FAIL above)")
    if not ok:
        sys.exit(EXIT_FAILED)
