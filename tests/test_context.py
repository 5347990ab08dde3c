"""`fac context`: exactly what an agent is given, within [context] max_chars, saying what was cut."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import Result
from helpers import assert_usage_error, run_fac
from queue_helpers import fac, human_commit

from supervisor import context
from supervisor.context import Part

TASK = "Add char_count(text) to textstats, with a test."


def fac_ok(*args: str) -> Result:
    """The real CLI in-process (a subprocess costs more than the command); exit 0 or the test fails."""
    res = fac(*args)
    assert res.exit_code == 0, res.output
    return res


def fac_json(*args: str) -> Any:
    return json.loads(fac_ok(*args, "--json").stdout)


def test_spawn_writes_exactly_what_fac_context_prints(factory: Path) -> None:
    fac_ok("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "sleep 600", "--task", TASK)

    printed = fac_ok("context", "w1").stdout

    assert (factory / ".fac/runs/w1/context.md").read_text() == printed
    for needle in (
        "# Role: worker",
        "You are a worker in a software factory",  # the role prompt
        f"# Task\n\n{TASK}",
        "  - tests: `python -m pytest -q` in system-under-construction/",  # the check it should run
        "# The system's README",
        "# Spec specs/current/textstats.md",
        "{#words-lower-cased-in-order}",
    ):
        assert needle in printed, f"{needle!r} not in the context:\n{printed}"
    assert "Cut to fit" not in printed  # the default budget holds it all
    # A message that arrives later is part of what the agent is given from then on.
    fac_ok("send", "w1", "please also count spaces")
    assert "please also count spaces" in fac_ok("context", "w1").stdout
    assert_usage_error(run_fac("context", "nobody"), "no worker named 'nobody'")


def test_context_respects_its_budget_cutting_the_least_relevant_first(factory: Path) -> None:
    toml = (factory / "factory.toml").read_text() + "\n[context]\nmax_chars = 1500\n"
    human_commit(factory, {"factory.toml": toml}, "human: a small context budget")
    fac_ok("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "sleep 600", "--task", TASK)

    ctx = fac_json("context", "w1")

    text = ctx["text"]
    assert ctx["max_chars"] == 1500 and len(text) == ctx["chars"] <= 1500
    assert (factory / ".fac/runs/w1/context.md").read_text() == text
    # The spec (least relevant) goes first, then the README; the role prompt and the task stay whole.
    assert [c["key"] for c in ctx["cut"]][:2] == ["spec:specs/current/textstats.md", "readme"]
    assert {c["key"] for c in ctx["cut"]}.isdisjoint({"role", "task"})
    assert f"# Task\n\n{TASK}" in text and "You are a worker in a software factory" in text
    # ... and it says so, with where to read the rest.
    assert "# Cut to fit 1500 characters (least relevant first)" in text
    assert "- spec specs/current/textstats.md: left out" in text
    assert "full text: specs/current/textstats.md" in text


def test_fit_shortens_a_part_when_enough_of_it_still_fits() -> None:
    parts = [
        Part("role", "role", "# Role\n" + "r" * 300, 100, "roles/worker.md", essential=True),
        Part("readme", "README", "# README\n" + "x" * 2000, 60, "README.md"),
        Part("spec", "spec", "# Spec\n" + "s" * 2000, 50, "specs/current/a.md"),
    ]

    text, info, cut = context.fit(parts, 1500)

    assert len(text) <= 1500
    assert [(c["key"], c["how"]) for c in cut] == [("spec", "left out"), ("readme", "shortened")]
    kept = {i["key"]: i["kept_chars"] for i in info}
    assert kept["role"] == len(parts[0].text) and kept["spec"] == 0 and 240 <= kept["readme"] < 2000
    assert "characters cut; full text: README.md]" in text
    assert context.fit(parts, 10_000)[2] == []
