"""`fac supervise`: the supervisor in the foreground, with its dashboard."""

from __future__ import annotations

import os
import signal
import sys
import time

import click

from supervisor.commands import find_factory, timestamped


@click.command()
@click.option("--no-dashboard", is_flag=True, help="Print events as lines instead of the live table.")
def supervise(no_dashboard: bool) -> None:
    """Run the supervisor in the foreground (`fac up` runs it in the window `supervisor`).

    Restarts crashed agents with backoff, pastes unacknowledged messages again, stops the line
    when main is red, pulls waiting tasks under the WIP limit, and shows the dashboard. In its
    own window it also restarts a dead merge-queue window (each restart is an event in `fac log`).
    """
    from supervisor import health
    from supervisor.daemon import Supervisor
    from supervisor.tmux import LiveTmux

    fac = find_factory()
    fac.tmux = LiveTmux()  # it runs for hours: libtmux's objects, imported once
    # In its own window (`fac up`), it keeps the merge queue's window alive.
    keep = (health.QUEUE_WINDOW,) if os.environ.get(health.WINDOW_ENV) == health.SUPERVISOR_WINDOW else ()
    if no_dashboard or not sys.stdout.isatty():
        Supervisor(fac, say=timestamped, keep=keep).run()
        return
    from rich.console import Console
    from rich.live import Live

    from supervisor import dashboard, tmux, wake

    recent: list[str] = []

    def note(msg: str) -> None:
        recent.append(f"{time.strftime('%H:%M:%S')} {msg}")
        del recent[:-8]

    # The alternate screen: each refresh repaints the whole window, so a resize leaves no remains of
    # the previous size's frame (Live's in-place mode moves up by the old line count, which a resize
    # rewraps).
    # The live table follows the window's real size, never COLUMNS or LINES in the environment (a
    # tmux server started from a shell that exported them passes them to every pane).
    for var in tmux.TERMINAL_SIZE:
        os.environ.pop(var, None)
    with Live(console=Console(), auto_refresh=False, screen=True) as live:

        def redraw() -> None:
            from rich.console import Group
            from rich.text import Text

            table = dashboard.render(dashboard.snapshot(fac))
            live.update(Group(table, Text("\n".join(recent), style="dim")), refresh=True)

        sup = Supervisor(fac, say=note, on_reconcile=redraw, keep=keep)

        # A resize wakes the loop to repaint at once, and once more when tmux has settled the new
        # size: the first repaint can still see the old one, and nothing else wakes an idle
        # supervisor before its tick.
        wake.on_signal(signal.SIGWINCH, sup.wake.set, again=0.3)
        sup.run()
