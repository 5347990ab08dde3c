"""`fac inbox`, `fac send`, `fac ask` and `fac answer`: messages between workers and humans."""

from __future__ import annotations

import sys
import time

import click

from supervisor.commands import echo_json, find_factory, worker_arg
from supervisor.errors import EXIT_FAILED, FacError
from supervisor.text import read_stdin_text, shown_escaped, typed


@click.command()
@click.option("--worker", help="Whose inbox (default in a pane: $FAC_WORKER).")
@click.option("--all", "show_all", is_flag=True, help="Also messages already read.")
@click.option("--id", "mid", type=int, help="Show one message in full.")
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(0),
    help="Block up to this many seconds for an unread message (exit 1 if none came).",
)
@click.option(
    "--ack", "ack_ids", type=int, multiple=True, help="Acknowledge message ID (a receipt); repeatable."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def inbox(
    worker: str | None,
    show_all: bool,
    mid: int | None,
    wait_s: float | None,
    ack_ids: tuple[int, ...],
    as_json: bool,
) -> None:
    """Messages for a worker: red verdicts, conflicts, merges, notes from humans.

    Without --all only unread ones are shown. The worker's own read (in its pane, where
    FAC_WORKER names it) marks them read, and that is its receipt: they are not pasted again. Anyone
    else reading (a human's `fac inbox --worker W`) only peeks: nothing is marked, so the agent still
    gets every message; `--ack ID` acknowledges on its behalf. Agents can block on their next
    verdict with `fac inbox --wait 600`.
    """
    from supervisor import identity, messages

    fac = find_factory()
    name = worker_arg(worker)
    messages.require_inbox(fac, name)
    if ack_ids:
        acked = messages.ack(fac, name, list(ack_ids))
        if as_json:
            echo_json({"acked": acked})
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
            from supervisor import wake

            # A message is a write to the store (its WAL in .fac/): inotify wakes the wait at once;
            # without inotify, or between writes, the store is looked at every 0.2 s as before.
            watcher = wake.watch([fac.fac_dir])
            deadline = time.monotonic() + wait_s
            try:
                # Looked at again once the watcher runs: nothing stored meanwhile is missed.
                while not (msgs := fac.store.messages(name, unread_only=True)):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    if watcher.active:
                        watcher.event.wait(min(left, 1.0))
                        watcher.event.clear()
                    else:
                        time.sleep(min(left, 0.2))
            finally:
                watcher.stop()
            if not msgs:
                click.echo(f"no message for {name} within {wait_s:g}s", err=True)
                sys.exit(EXIT_FAILED)
    own = identity.caller().worker == name  # the worker itself: reading is its receipt
    if own:
        messages.mark_read(fac, name, [m.id for m in msgs])
    if as_json:
        keys = ("id", "ts", "sender", "kind", "body", "delivered_at", "read_at")
        echo_json([{k: getattr(m, k) for k in keys} for m in msgs])
        return
    if not msgs:
        click.echo(f"no {'' if show_all else 'unread '}messages for {name}")
        return
    for m in msgs:
        when = time.strftime("%H:%M:%S", time.localtime(m.ts))
        click.echo(f"--- message {m.id} from {m.sender} ({m.kind}) at {when}")
        click.echo(m.body)
    if not own:
        click.echo(f"(a peek: nothing was marked read; {name} still gets these; --ack ID acknowledges one)")


@click.command()
@click.argument("worker")
@click.argument("text")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
def send(worker: str, text: str, as_json: bool) -> None:
    """Send TEXT to WORKER: stored in its inbox and pasted into its pane. TEXT "-" reads stdin.

    It is pasted only where the agent can read it: never into a dialog or a permission prompt, and
    into Claude Code only at its prompt (mid-turn its hooks hand it over); the output says why a
    message was not pasted yet. The supervisor delivers it later.
    """
    from supervisor import identity, messages

    text = read_stdin_text(sys.stdin) if text == "-" else shown_escaped(text)
    if not text.strip():
        raise FacError(
            "the message is empty", hint=f'fac send {worker} "text", or pipe it in: ... | fac send {worker} -'
        )
    # The sender is who speaks: a worker's name on its channel, never a name it picks.
    d = messages.send(find_factory(), worker, text, sender=identity.caller().sender, kind="note")
    if as_json:
        echo_json({"id": d.id, "pasted": d.pasted, "reason": d.reason})
        return
    where = "inbox and pane" if d.pasted else f"inbox (not pasted: {d.reason})"
    click.echo(f"sent message {d.id} to {worker}: {where}")


@click.command()
@click.argument("question")
@click.option("--worker", help="Default in a pane: $FAC_WORKER.")
def ask(question: str, worker: str | None) -> None:
    """Pull the andon cord: ask a human. The worker shows as needs-human until answered."""
    from supervisor import andon

    name = worker_arg(worker)
    andon.ask(find_factory(), name, shown_escaped(question))
    click.echo(
        typed(f"asked: a human will answer with `fac answer {name} ...`; the answer arrives in your inbox")
    )


@click.command()
@click.argument("worker")
@click.argument("text")
def answer(worker: str, text: str) -> None:
    """Answer WORKER's open question: delivered to its inbox and pane; it goes back to work."""
    from supervisor import andon

    d = andon.answer(find_factory(), worker, shown_escaped(text))
    click.echo(f"answered {worker} (message {d.id}{'' if d.pasted else ', not pasted: ' + d.reason})")
