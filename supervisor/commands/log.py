"""`fac log`: the factory's event log."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from supervisor.commands import find_factory
from supervisor.errors import FacError


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
@click.option("--worker", help="Only this worker's events.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many recent events to start with.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def log(follow: bool, worker: str | None, lines: int, as_json: bool) -> None:
    """The factory's event log (append-only): spawns, submissions, verdicts, merges, messages."""
    fac = find_factory()
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
                click.echo(
                    json.dumps(
                        {
                            "id": ev.id,
                            "ts": ev.ts,
                            "kind": ev.kind,
                            "worker": ev.worker,
                            "correlation": ev.correlation,
                            "payload": ev.payload,
                        }
                    )
                )
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
