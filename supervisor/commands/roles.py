"""`fac roles` and `fac roles new`: the roles in roles/."""

from __future__ import annotations

import click

from supervisor.commands import echo_json, find_factory
from supervisor.model import RUNTIME_NAMES
from supervisor.text import table, typed


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
@click.pass_context
def roles(ctx: click.Context, as_json: bool) -> None:
    """List the roles in roles/ (`fac roles new NAME` scaffolds one; `fac roles ls` lists too)."""
    if ctx.invoked_subcommand:
        return
    from supervisor import roles as rolesmod

    found = rolesmod.load_all(find_factory().root)
    if as_json:
        echo_json(
            [
                {
                    "name": r.name,
                    "description": r.description,
                    "runtime": r.runtime,
                    "writable": list(r.writable),
                    "max_instances": r.max_instances,
                    "path": str(r.path),
                }
                for r in found.values()
            ]
        )
        return
    rows = [
        [r.name, r.runtime, ",".join(r.writable), str(r.max_instances or "-"), r.description]
        for r in found.values()
    ]
    click.echo(table(rows, ["ROLE", "RUNTIME", "WRITABLE", "MAX", "DESCRIPTION"]))


@roles.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
@click.pass_context
def roles_ls(ctx: click.Context, as_json: bool) -> None:
    """List the roles in roles/ (the same as `fac roles`)."""
    ctx.invoke(roles, as_json=as_json)


@roles.command("new")
@click.argument("name")
@click.option("--description", default="", help="One line saying what the role does.")
@click.option("--runtime", type=click.Choice(RUNTIME_NAMES), default="command", show_default=True)
def roles_new(name: str, description: str, runtime: str) -> None:
    """Scaffold roles/NAME.md: front matter plus a prompt to edit. No code needed."""
    from supervisor import roles as rolesmod

    path = rolesmod.scaffold(find_factory().root, name, description, runtime)
    click.echo(typed(f"created {path}; edit its prompt, then `fac spawn {name} ...`"))
