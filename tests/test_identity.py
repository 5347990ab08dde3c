"""Who is speaking (issue 11): the pure rules of identity.py, as tables that run in milliseconds."""

from __future__ import annotations

import pytest

from supervisor import identity
from supervisor.errors import FacError

# --- the policy: a table, decided without any process ---


@pytest.mark.parametrize(
    ("path", "allowed"),
    [
        (("submit",), True),
        (("check",), True),
        (("inbox",), True),
        (("ask",), True),
        (("hook",), True),
        (("context",), True),
        (("send",), True),
        (("delta", "new"), True),
        (("delta", "show"), True),
        (("status",), True),
        (("line",), True),
        (("approve",), False),
        (("answer",), False),
        (("delta", "approve"), False),
        (("delta", "reject"), False),
        (("line", "resume"), False),
        (("kill",), False),
        (("down",), False),
        (("up",), False),
        (("spawn",), False),
        (("env", "shell"), False),
        (("verify",), False),
        (("queue", "run"), False),
        (("agent", "run"), False),  # the built-in agent's loop runs in the pane, never on the channel
        (("agent", "self"), True),  # what the built-in agent asks of the factory, for itself only
        (("agent", "usage"), True),
        (("agent", "event"), True),
        (("agent", "stop"), True),
        (("agent",), False),
    ],
)
def test_an_agent_runs_only_the_agent_side_commands(path: tuple[str, ...], allowed: bool) -> None:
    assert (identity.refusal(path) is None) is allowed


def test_the_pane_runs_the_built_in_agent_itself() -> None:
    assert identity.refusal(("agent", "run"), channel=False) is None


@pytest.mark.parametrize(
    ("env", "worker", "channel"),
    [
        ({}, None, False),  # a terminal outside any pane: a human
        ({"FAC_WORKER": "w1"}, "w1", False),  # a pane without its channel: still w1 (fail closed)
        ({"FAC_SOCKET": "/f/.fac/runs/w1/fac.sock"}, "w1", False),  # FAC_WORKER unset: the socket's
        ({identity.CHANNEL_ENV: "w1", "FAC_WORKER": "w2"}, "w1", True),  # the channel wins
    ],
)
def test_who_is_speaking(env: dict[str, str], worker: str | None, channel: bool) -> None:
    who = identity.caller(env)
    assert (who.worker, who.channel) == (worker, channel)
    assert who.sender == (worker or "human")


def test_a_channel_request_is_never_relayed_again() -> None:
    assert identity.relay_socket({"FAC_SOCKET": "/s"}) == "/s"
    assert identity.relay_socket({"FAC_SOCKET": "/s", identity.CHANNEL_ENV: "w1"}) is None


def test_acting_for_another_worker_is_refused_for_agents_only() -> None:
    agent = identity.Caller("w1", channel=True)
    assert identity.own(None, agent) == "w1"
    assert identity.own("w1", agent) == "w1"
    with pytest.raises(FacError, match=r"acting for another worker \(w2\)"):
        identity.own("w2", agent)
    assert identity.own("w2", identity.Caller(None)) == "w2"


@pytest.mark.parametrize(
    ("sender", "kind", "allowed"),
    [
        ("merge-queue", "merged", True),
        ("merge-queue", "red", True),
        ("human", "answer", True),
        ("human", "note", True),
        ("supervisor", "line", True),
        ("w1", "note", True),
        ("w1", "merged", False),  # a verdict only from the queue
        ("w1", "red", False),
        ("w1", "answer", False),  # an answer only from a human
        ("w1", "line", False),
        ("human", "merged", False),
        ("supervisor", "answer", False),
        ("w1", "andon", False),  # a worker sends notes, nothing else
    ],
)
def test_only_its_sender_writes_a_kind(sender: str, kind: str, allowed: bool) -> None:
    assert (identity.may_send(sender, kind) is None) is allowed


@pytest.mark.parametrize(
    ("sender", "kind", "verdict"),
    [
        ("merge-queue", "merged", True),
        ("merge-queue", "conflict", True),
        ("w2", "note", False),
        ("human", "note", False),
        ("merge-queue", "note", False),
    ],
)
def test_a_verdict_is_known_by_its_sender_and_kind(sender: str, kind: str, verdict: bool) -> None:
    assert identity.is_verdict(sender, kind) is verdict
