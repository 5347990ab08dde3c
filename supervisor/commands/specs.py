"""`fac delta ...`, `fac state`, `fac spec lint` and `fac context`: the specs side of the factory."""

from __future__ import annotations

import sys

import click

from supervisor.commands import echo_json, find_factory
from supervisor.errors import EXIT_FAILED, FacError
from supervisor.text import typed


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
@click.pass_context
def delta(ctx: click.Context, as_json: bool) -> None:
    """Requested changes to the specs: specs/deltas/NNNN-slug.md (without a subcommand: list them).

    \b
    Lifecycle: proposed -> approved -> in-progress -> merged -> done (or rejected).
      fac delta new TITLE --statement "... MUST ..." --check tests::test_x   (proposed)
      fac delta approve ID                          (humans only)
      fac spawn worker --delta ID                   (in-progress)
      the merge queue merges the worker's branch    (merged)
      its acceptance checks pass on main            (done: the factory folds it into specs/current)
    """
    if ctx.invoked_subcommand is None:
        ctx.invoke(delta_ls, as_json=as_json)


@delta.command("new")
@click.argument("title")
@click.option(
    "--statement",
    "statements",
    multiple=True,
    metavar="TEXT",
    help='A statement, e.g. "`char_count(text)` MUST return ... [check: tests::test_char_count]".',
)
@click.option(
    "--check",
    "checks",
    multiple=True,
    metavar="NAME",
    help="An acceptance check: a check name, or CHECK::TEST for one pytest test (may not exist yet).",
)
@click.option("--owner", help="Who asked for it (default: $FAC_WORKER for an agent, else $USER).")
@click.option("--spec", help="The specs/current file its statements join when done, e.g. textstats.md.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def delta_new(
    title: str,
    statements: tuple[str, ...],
    checks: tuple[str, ...],
    owner: str | None,
    spec: str | None,
    as_json: bool,
) -> None:
    """Propose a delta. A human's is committed on main; an agent's waits in the store for a human."""
    from supervisor import deltas

    v = deltas.new(find_factory(), title, list(statements), list(checks), owner=owner, spec=spec)
    if as_json:
        echo_json(v.as_dict())
        return
    where = v.delta.path + (" (committed on main)" if v.file_status else " (a proposal: a human approves it)")
    click.echo(f"delta {v.id} proposed: {v.delta.title}\n  {where}")
    click.echo(typed(f"next: review it (fac delta show {v.id}), then `fac delta approve {v.id}`"))


@delta.command("ls")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def delta_ls(as_json: bool) -> None:
    """Every delta with its status, owner, worker and acceptance checks."""
    from supervisor import deltas
    from supervisor.text import table

    vs = deltas.views(find_factory())
    if as_json:
        echo_json([v.as_dict() for v in vs])
        return
    if not vs:
        click.echo(typed('no deltas: propose one with `fac delta new "TITLE" --statement "... MUST ..."`'))
        return
    rows = [
        [
            v.id,
            v.status,
            v.delta.title,
            v.delta.owner or "-",
            (v.store or {}).get("worker") or "-",
            str(len(v.delta.statements)),
            ", ".join(str(a) for a in v.delta.acceptance) or "-",
            "" if v.file_status else "(not on main yet)",
        ]
        for v in vs
    ]
    click.echo(table(rows, ["ID", "STATUS", "TITLE", "OWNER", "WORKER", "STATEMENTS", "ACCEPTANCE", ""]))


@delta.command("show")
@click.argument("ident", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def delta_show(ident: str, as_json: bool) -> None:
    """One delta: its status (file and store) and its text."""
    from supervisor import deltas

    v = deltas.get(find_factory(), ident)
    if as_json:
        echo_json({**v.as_dict(), "text": v.delta.text})
        return
    s = v.store or {}
    click.echo(f"delta {v.id}: {v.delta.title}")
    click.echo(
        f"  status {v.status} (file on main: {v.file_status or 'none yet'}; store: {s.get('status') or '-'})"
    )
    if s.get("worker"):
        click.echo(f"  worker {s['worker']}")
    if s.get("note"):
        click.echo(f"  note: {s['note']}")
    click.echo(f"  {v.delta.path}\n")
    click.echo(v.delta.text.rstrip())


@delta.command("approve")
@click.argument("ident", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def delta_approve(ident: str, as_json: bool) -> None:
    """Approve a proposed delta (humans only): committed on main as approved."""
    from supervisor import deltas

    v = deltas.approve(find_factory(), ident)
    if as_json:
        echo_json(v.as_dict())
        return
    click.echo(f"delta {v.id} approved: {v.delta.title} ({v.delta.path} on main)")
    click.echo(typed(f"next: fac spawn worker --delta {v.id}"))


@delta.command("reject")
@click.argument("ident", metavar="ID")
@click.option("--reason", help="Why; kept in the delta's front matter.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def delta_reject(ident: str, reason: str | None, as_json: bool) -> None:
    """Reject a delta (humans only)."""
    from supervisor import deltas

    v = deltas.reject(find_factory(), ident, reason)
    if as_json:
        echo_json(v.as_dict())
        return
    click.echo(f"delta {v.id} rejected: {v.delta.title}" + (f" ({reason})" if reason else ""))


@click.command()
@click.option("--ref", help="Judge this commit instead of main.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def state(ref: str | None, as_json: bool) -> None:
    """The specs against reality: current statements with their status on main, open deltas, the
    desired state, and the drift. Exit 1 when there is drift, so it works as a check.

    A statement is pass (its linked checks pass on main), fail (one fails: that is drift), or
    unverified (no check). Check results are cached per tree: an unchanged main runs nothing.
    """
    from supervisor import drift

    data = drift.build(find_factory(), ref)
    if as_json:
        echo_json(data)
    else:
        click.echo(drift.render(data))
    if not data["ok"]:
        sys.exit(EXIT_FAILED)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
@click.pass_context
def spec(ctx: click.Context, as_json: bool) -> None:
    """The specs in specs/current and specs/deltas (without a subcommand: list the spec files).

    \b
    fac spec              the files of specs/current with their statements, and the deltas
    fac spec lint         check the specs (the merge queue runs it as guard:spec-lint)
    fac delta             the requested changes; fac state: the specs against main
    """
    if ctx.invoked_subcommand is not None:
        return
    from supervisor import specs
    from supervisor.specs import deltafiles

    fac = find_factory()
    source = specs.DirSource(fac.root)
    files = specs.load_current(source)
    deltas = deltafiles.load(source)
    if as_json:
        echo_json(
            {
                "current": [{"path": f.path, "statements": [st.id for st in f.statements]} for f in files],
                "deltas": [
                    {"id": d.id, "title": d.title, "status": d.status, "path": d.path} for d in deltas
                ],
            }
        )
        return
    from supervisor.text import table

    if files:
        click.echo(table([[f.path, str(len(f.statements))] for f in files], ["SPEC", "STATEMENTS"]))
    else:
        click.echo(f"no spec files in {specs.CURRENT}/ yet")
    click.echo(
        f"{len(deltas)} delta file(s) in specs/deltas (`fac delta` lists them); "
        "`fac spec lint` checks them all; `fac state` compares them with main"
    )


@spec.command("lint")
@click.option("--ref", help="Lint this commit (e.g. main) instead of the working tree.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def spec_lint(ref: str | None, as_json: bool) -> None:
    """Check the specs: keywords in capitals, SHOULD/MAY with a Reason:, links to checks and tests that
    exist, valid delta front matter, no duplicate ids. Exit 1 on any problem.

    The merge queue runs the same lint on every entry (guard:spec-lint).
    """
    from supervisor import specs

    fac = find_factory()
    source, errors = specs.lint_source(fac.root, ref, fac.fac_dir)
    if as_json:
        echo_json({"source": source.label, "ok": not errors, "errors": [e.as_dict() for e in errors]})
    else:
        for e in errors:
            click.echo(str(e))
        click.echo(f"spec lint of {source.label}: " + (f"{len(errors)} problem(s)" if errors else "clean"))
    if errors:
        sys.exit(EXIT_FAILED)


@click.command()
@click.argument("worker", required=False)
@click.option(
    "--json", "as_json", is_flag=True, help="The parts, their sizes and what was cut, with the text."
)
def context(worker: str | None, as_json: bool) -> None:
    """Print exactly what WORKER's agent is given (default in a pane: $FAC_WORKER).

    Role prompt, task, delta, the statements it changes, the check commands, open messages, the
    system's README and the specs, within [context] max_chars: the least relevant parts are cut
    first, and the text ends by saying what was cut.
    """
    from supervisor import context as contextmod
    from supervisor import identity

    name = identity.own(worker)
    if not name:
        raise FacError(
            "which worker?", hint="fac context NAME (inside a worker's pane it defaults to $FAC_WORKER)"
        )
    ctx = contextmod.for_worker(find_factory(), name)
    if as_json:
        echo_json(ctx.as_dict())
    else:
        click.echo(ctx.text, nl=False)
