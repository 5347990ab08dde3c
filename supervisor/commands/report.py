"""`fac report`: flow metrics from the event log."""

from __future__ import annotations

import click

from supervisor.commands import echo_json, find_factory


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def report(as_json: bool) -> None:
    """Flow metrics from the event log: lead time, flow efficiency, first-pass yield, queue wait, MTTR."""
    from supervisor import report as reportmod

    data = reportmod.build(find_factory())
    if as_json:
        echo_json(data)
    else:
        click.echo(reportmod.render(data))
