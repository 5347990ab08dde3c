"""`fac log`: the factory's event log."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import click

from supervisor.commands import find_factory
from supervisor.errors import FacError
from supervisor.model import Event
from supervisor.text import clock, iso_time, short_sha

# Message bookkeeping: every delivery and acknowledgement is an event, which drowns the story in the
# text view. Hidden there unless --all; --json always has every event.
NOISE = frozenset({"ack", "delivered"})
SHA_KEYS = frozenset({"sha", "tested", "base", "main", "merged_as", "head"})
# Plumbing a reader of the log does not need (tmux ids, the runtime's kind); --json keeps it.
PLUMBING = frozenset({"window", "pane", "runtime", "pid"})
SUMMARY_WIDTH = 90


def summary(ev: Event) -> str:
    """One short line of what an event says: its correlation, then its non-empty fields as key=value
    (shas shortened, lists joined, tmux plumbing left out), cut to a readable width."""
    parts = [ev.correlation] if ev.correlation else []
    for k, v in ev.payload.items():
        if v in (None, [], "", {}) or k in PLUMBING:
            continue
        if k in SHA_KEYS and isinstance(v, str):
            shown = short_sha(v)
        elif isinstance(v, list) and all(isinstance(x, str | int) for x in v):
            shown = ",".join(str(x) for x in v)
        else:
            shown = v if isinstance(v, str) else json.dumps(v, default=str)
        parts.append(f"{k}={shown}".replace("\n", " "))
    s = " ".join(parts)
    return s if len(s) <= SUMMARY_WIDTH else s[: SUMMARY_WIDTH - 3] + "..."


def row(ev: Event) -> str:
    return f"{clock(ev.ts)}  {ev.kind:<18} {(ev.worker or '-'):<12} {summary(ev)}".rstrip()


def as_json(ev: Event) -> dict[str, Any]:
    return {
        "id": ev.id,
        "ts": ev.ts,
        "ts_iso": iso_time(ev.ts),
        "kind": ev.kind,
        "worker": ev.worker,
        "correlation": ev.correlation,
        "payload": ev.payload,
    }


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
@click.option("--worker", help="Only this worker's events.")
@click.option("-n", "--lines", default=50, show_default=True, help="How many recent events to start with.")
@click.option(
    "--all", "show_all", is_flag=True, help="Also show message bookkeeping (ack, delivered) in the text view."
)
@click.option(
    "--json",
    "json_out",
    is_flag=True,
    help="One JSON object per line, every event (ack and delivered too), ts in epoch seconds and ISO 8601.",
)
def log(follow: bool, worker: str | None, lines: int, show_all: bool, json_out: bool) -> None:
    """The factory's event log (append-only): spawns, submissions, verdicts, merges, messages.

    Text: one event a line, in columns: local time, event, worker, a short summary. Message
    bookkeeping (`ack`, `delivered`) is hidden unless --all.

    \b
    Examples:
      fac log -n 20                 # the last 20 events
      fac log -f --worker w1        # follow one worker
      fac log --json | jq .kind     # for scripts: every event, unchanged
    """
    fac = find_factory()
    store = fac.store
    hide = frozenset() if json_out or show_all else NOISE

    def shown(ev: Event) -> bool:
        return ev.kind not in hide

    events = _recent(store.events(worker=worker), shown, lines)
    if worker and not events and store.worker(worker) is None:
        raise FacError(
            f"no worker named {worker!r} and no events of one", hint=f"workers: {fac.worker_names()}"
        )
    last = store.events(worker=worker, limit=1)
    last_id = last[-1].id if last else 0
    while True:
        for ev in events:
            click.echo(json.dumps(as_json(ev)) if json_out else row(ev))
        if not follow:
            return
        sys.stdout.flush()
        time.sleep(0.3)
        new = store.events(worker=worker, after=last_id)
        if new:
            last_id = new[-1].id
        events = [ev for ev in new if shown(ev)]


def _recent(events: list[Event], shown: Callable[[Event], bool], n: int) -> list[Event]:
    kept = [ev for ev in events if shown(ev)]
    return kept[-n:] if n > 0 else kept
