"""`fac status`: one snapshot of the factory for humans (a table) and scripts (JSON)."""

from __future__ import annotations

from typing import Any

from supervisor.errors import FacError
from supervisor.factory import Factory


def collect(fac: Factory) -> dict[str, Any]:
    from supervisor import workers

    try:
        running = fac.tmux.has_session(fac.session)
    except FacError:
        running = False
    return {
        "root": str(fac.root),
        "session": fac.session,
        "session_running": running,
        "main": fac.main,
        "workers": [v.as_dict() for v in workers.views(fac)],
    }


def render(data: dict[str, Any]) -> str:
    from supervisor.text import table

    state = "up" if data["session_running"] else "down"
    lines = [f"factory {data['root']}  session {data['session']} ({state})"]
    ws = data["workers"]
    if not ws:
        lines.append('no workers: start one with `fac spawn worker --cmd "..."`')
    else:
        rows = [
            [w["name"], w["role"], w["branch"], w["state"], w["process"], w["window"] or "-",
             (w["head"] or "")[:8]]
            for w in ws
        ]  # fmt: skip
        lines.append(table(rows, ["WORKER", "ROLE", "BRANCH", "STATE", "PROCESS", "WINDOW", "HEAD"]))
    return "\n".join(lines)
