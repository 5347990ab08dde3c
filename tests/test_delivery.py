"""Message delivery: when to paste and on which channel (table tests of supervisor/delivery.py), one
deliverer per message (the store's claim, raced by real processes on a real tmux pane), and the
order of paste and receipt."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import capture_pane, fac_json, session_of, spawn, wait_for

from supervisor import delivery, messages
from supervisor.factory import Factory
from supervisor.store import Store

NOW = 1000.0
REDELIVER = 30.0

# channel, position, position_since, pane alive, delivered_at, attempts -> action, due, a word of the reason
PLANS = [
    # fac's built-in agent reads its own inbox: never pasted
    ("inbox", "prompt", 0.0, True, None, 0, "skip", None, "reads its inbox itself"),
    # no live pane, or pasted too often: not by paste
    ("comment", "prompt", 0.0, False, None, 0, "skip", None, "no live pane"),
    ("hooks", "prompt", 0.0, True, 900.0, 5, "skip", None, "pasted 5 times"),
    # a dialog (a permission prompt) is never typed into, whatever the runtime
    ("comment", "dialog", 0.0, True, None, 0, "wait", None, "a dialog is open"),
    ("hooks", "dialog", 0.0, True, None, 0, "wait", None, "a dialog is open"),
    # Claude Code: pasted only at its prompt; at start-up and mid-turn its hooks hand it over
    ("hooks", "starting", 0.0, True, None, 0, "wait", None, "SessionStart hook"),
    ("hooks", "busy", 0.0, True, None, 0, "wait", None, "Stop or UserPromptSubmit hook"),
    ("hooks", "prompt", 990.0, True, None, 0, "paste", None, ""),
    ("hooks", "prompt", 990.0, True, 980.0, 1, "paste", None, ""),  # pasted at an earlier prompt
    # pasted at this prompt and no receipt: wait, then press Enter again (never a second copy)
    ("hooks", "prompt", 990.0, True, 995.0, 1, "wait", 1025.0, "waiting for its receipt"),
    ("hooks", "prompt", 900.0, True, 950.0, 1, "enter", None, "pressing Enter again"),
    # comment lines: harmless at any position but a dialog
    ("comment", "starting", 0.0, True, None, 0, "paste", None, ""),
    ("comment", "busy", 0.0, True, None, 0, "paste", None, ""),
    ("comment", "busy", 0.0, True, 990.0, 1, "wait", 1020.0, "waiting for its receipt"),
    ("comment", "busy", 0.0, True, 900.0, 2, "paste", None, "pasted again"),
    ("comment", "busy", 0.0, True, 950.0, 2, "wait", 1010.0, "waiting for its receipt"),  # backoff
    # it stopped working (or a new process started) after the paste: pasted again at once
    ("comment", "prompt", 995.0, True, 990.0, 1, "paste", None, "not read since it was pasted"),
    ("comment", "starting", 995.0, True, 990.0, 1, "paste", None, "not read since it was pasted"),
]


@pytest.mark.parametrize(
    ("channel", "position", "since", "alive", "delivered_at", "attempts", "action", "due", "why"), PLANS
)
def test_plan_pastes_only_where_the_agent_can_read_it(
    channel: str,
    position: str,
    since: float,
    alive: bool,
    delivered_at: float | None,
    attempts: int,
    action: str,
    due: float | None,
    why: str,
) -> None:
    got = delivery.plan(
        channel,  # type: ignore[arg-type]
        position,  # type: ignore[arg-type]
        since,
        pane_alive=alive,
        delivered_at=delivered_at,
        attempts=attempts,
        now=NOW,
        redeliver=REDELIVER,
        max_deliveries=5,
    )
    assert (got.action, got.due) == (action, due)
    assert why in got.reason


HOOK_POSITIONS = [
    ("session-start", {"source": "resume"}, False, "busy"),
    ("prompt", {"prompt": "hi"}, False, "busy"),
    ("working", {}, False, "busy"),
    ("stop", {}, False, "prompt"),
    ("stop", {}, True, "busy"),  # blocked: it works on
    ("idle", {}, False, "prompt"),
    ("notification", {"notification_type": "permission_prompt"}, False, "dialog"),
    ("notification", {"notification_type": "elicitation_dialog"}, False, "dialog"),
    ("notification", {"notification_type": "idle_prompt"}, False, "prompt"),
    ("notification", {"message": "Claude needs your permission to use Bash"}, False, "dialog"),  # untyped
    ("notification", {"notification_type": "auth_success"}, False, None),  # says nothing of where it is
    ("ack", {}, False, None),
]


@pytest.mark.parametrize(("event", "data", "blocked", "want"), HOOK_POSITIONS)
def test_each_hook_says_where_the_agent_is(event: str, data: dict, blocked: bool, want: str | None) -> None:
    assert delivery.hook_position(event, data, blocked=blocked) == want


@pytest.mark.parametrize(
    ("kind", "payload", "want"),
    [
        (None, {}, "starting"),
        ("spawned", {}, "starting"),
        ("restarted", {"reason": "exit 1"}, "starting"),
        ("hook:stop", {"at": "prompt"}, "prompt"),
        ("hook:notification", {"at": "dialog"}, "dialog"),
        ("hook:prompt", {"at": "busy"}, "busy"),
    ],
)
def test_the_latest_event_gives_the_position(kind: str | None, payload: dict, want: str) -> None:
    assert delivery.position_of(kind, payload) == want


# --- the store's claim ---


def _message(store: Store, worker: str = "w1", body: str = "hello") -> int:
    with store.tx() as db:
        return store.add_message(worker, "human", "note", body, db)


def test_one_claim_wins_and_a_stale_view_or_an_ack_loses(tmp_path: Path) -> None:
    a, b = Store(tmp_path / "state.db"), Store(tmp_path / "state.db")  # two processes' connections
    mid = _message(a)
    assert a.claim_message(mid, "queue", attempts=0, now=NOW, stale_before=NOW - 30)
    assert not b.claim_message(mid, "supervisor", attempts=0, now=NOW, stale_before=NOW - 30)
    a.release_message(mid, "queue", pasted=True, via="paste")
    m = b.message(mid)
    assert m is not None and m.attempts == 1 and m.claimed_by is None and m.via == "paste"
    # The supervisor read the message before that paste: its view (attempts 0) is out of date.
    assert not b.claim_message(mid, "supervisor", attempts=0, now=NOW, stale_before=NOW - 30)
    assert [e.payload["id"] for e in a.events() if e.kind == "delivered"] == [mid]
    # Once acknowledged, nobody claims it again: never a paste after its receipt.
    assert a.ack_messages([mid], via="inbox", stale_before=NOW - 30) == ([mid], [])
    assert not b.claim_message(mid, "supervisor", attempts=1, now=NOW, stale_before=NOW - 30)


def test_a_dead_deliverers_claim_goes_stale(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    mid = _message(store)
    assert store.claim_message(mid, "died", attempts=0, now=NOW, stale_before=NOW - 30)
    assert not store.claim_message(mid, "next", attempts=0, now=NOW + 1, stale_before=NOW + 1 - 30)
    assert store.claim_message(mid, "next", attempts=0, now=NOW + 31, stale_before=NOW + 31 - 30)
    store.release_message(mid, "died", pasted=True, via="paste")  # the old holder's record is refused
    assert store.message(mid).attempts == 0  # type: ignore[union-attr]


def test_a_hook_takes_what_no_deliverer_holds_and_a_receipt_waits_for_the_paste(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    held, free, other = _message(store), _message(store), _message(store, worker="w2")
    assert store.claim_message(held, "queue", attempts=0, now=NOW, stale_before=0)
    taken = store.take_messages("w1", via="hook:stop", stale_before=0)
    assert [m.id for m in taken] == [free]  # the held one is being pasted: that paste delivers it
    assert store.message(free).acked_at is not None and store.message(free).via == "hook:stop"  # type: ignore[union-attr]
    assert store.message(other).acked_at is None  # type: ignore[union-attr]
    assert store.ack_messages([held], via="hook:prompt", stale_before=0) == ([], [held])
    store.release_message(held, "queue", pasted=True, via="paste")
    assert store.ack_messages([held], via="hook:prompt", stale_before=0) == ([held], [])
    assert store.take_messages("w1", via="hook:stop", stale_before=0) == []


def test_a_receipt_that_comes_during_a_paste_is_recorded_after_it(factory: Path) -> None:
    spawn(factory, "w1", "sleep 600")
    fac = Factory(factory)
    with fac.store.tx() as db:
        mid = messages.store(fac, db, "w1", "rebase please", sender="human", kind="note")
    assert fac.store.claim_message(mid, "deliverer", attempts=0, now=1e12, stale_before=0)  # mid-paste
    acked: list[int] = []
    reader = threading.Thread(target=lambda: acked.extend(messages.ack(Factory(factory), "w1", [mid])))
    reader.start()  # the agent's own read: it must wait for the paste's record
    fac.store.release_message(mid, "deliverer", pasted=True, via="paste")
    reader.join(30)
    assert acked == [mid]
    kinds = [e.kind for e in fac.store.events(worker="w1") if e.kind in ("delivered", "ack")]
    assert kinds == ["delivered", "ack"]
    m = fac.store.message(mid)
    assert m is not None and m.delivered_at is not None and m.acked_at is not None
    assert m.delivered_at <= m.acked_at


# --- real processes racing on a real pane ---

RACER = """
import json, sys, time, pathlib
from supervisor import messages
from supervisor.factory import Factory
root, worker, mid, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), pathlib.Path(sys.argv[4])
fac = Factory(pathlib.Path(root))
while not go.exists():
    time.sleep(0.001)
d = messages.deliver(fac, worker, mid)
print(json.dumps({"pasted": d.pasted, "reason": d.reason}))
"""


def test_deliverers_racing_for_one_message_paste_it_once(factory: Path, tmux_socket: str) -> None:
    spawn(factory, "w1", "bash --norc --noprofile -c 'cat > /dev/null'")
    fac = Factory(factory)
    with fac.store.tx() as db:
        mid = messages.store(fac, db, "w1", "the one and only copy", sender="merge-queue", kind="red")
    go = factory / ".fac" / "go"
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(factory), "w1", str(mid), str(go)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    go.touch()
    results = [json.loads(p.communicate(timeout=60)[0]) for p in racers]
    assert sum(r["pasted"] for r in results) == 1, results
    m = fac.store.message(mid)
    assert m is not None and m.attempts == 1 and m.claimed_by is None
    assert len([e for e in fac.store.events(worker="w1") if e.kind == "delivered"]) == 1
    target = f"={session_of()}:=w1"
    wait_for(lambda: "the one and only copy" in capture_pane(tmux_socket, target), 10, "the paste")
    assert capture_pane(tmux_socket, target).count("the one and only copy") == 1


def test_fac_send_says_why_it_did_not_paste(factory: Path) -> None:
    spawn(factory, "w1", "sleep 600")
    fac = Factory(factory)
    fac.store.event("hook:notification", "w1", state="waiting-for-permission", at="dialog")
    res = fac_json("send", "w1", "not into the dialog", cwd=factory)
    assert res["pasted"] is False and "a dialog is open" in res["reason"]
    assert fac.store.message(res["id"]).attempts == 0  # type: ignore[union-attr]
