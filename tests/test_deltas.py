"""Deltas: from `fac delta new` to done with the statements in specs/current, humans-only approval, and
the guards that keep specs/ out of workers' reach (real git, real tmux, real SQLite, real pytest)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import Result
from helpers import assert_usage_error, git, run_fac, start_worker
from queue_helpers import (
    commit,
    entries,
    events,
    fac,
    merge_commits,
    run_queue,
    script_suite,
    spawn_worker,
    submit,
)

from supervisor import deltas, guards, repo, specs
from supervisor.factory import Factory
from supervisor.specs import deltafiles

SUT = "system-under-construction"
SPEC = "specs/current/textstats.md"
TEST = "test_char_count_counts_every_character"
STATEMENT = f"`char_count(text)` MUST return the number of characters in `text`. [check: tests::{TEST}]"
CHAR_COUNT = {
    f"{SUT}/textstats/chars.py": "def char_count(text: str) -> int:\n    return len(text)\n",
    f"{SUT}/tests/test_chars.py": f"from textstats.chars import char_count\n\n\ndef {TEST}():\n"
    '    assert char_count("ab c\\n") == 5\n',
}


def on_main(root: Path, path: str) -> str:
    return git(root, "show", f"main:{path}")


def fac_ok(*args: str) -> Result:
    """The real CLI in-process (a subprocess costs more than the command); exit 0 or the test fails."""
    res = fac(*args)
    assert res.exit_code == 0, f"fac {' '.join(args)} exited {res.exit_code}\n{res.output}"
    return res


def fac_json(*args: str) -> Any:
    return json.loads(fac_ok(*args, "--json").stdout)


def test_a_delta_goes_from_new_to_done_with_its_statements_in_specs_current(factory: Path) -> None:
    # A human proposes it: fac writes the file and commits it on main (the checkout follows).
    new = fac_json("delta", "new", "Count characters", "--statement", STATEMENT, "--check", f"tests::{TEST}")
    assert (new["id"], new["status"], new["on_main"]) == ("0001", "proposed", True)
    path = new["path"]
    assert path == "specs/deltas/0001-count-characters.md"
    assert 'status = "proposed"' in on_main(factory, path)
    assert git(factory, "status", "--porcelain") == "" and (factory / path).is_file()

    assert fac_json("delta", "approve", "1")["status"] == "approved"
    assert 'status = "approved"' in on_main(factory, path)

    # Assigned: in progress; its id is the spawn's correlation id and reaches the agent's context.
    fac_ok("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "sleep 600", "--delta", "1")
    [row] = fac_json("delta", "ls")
    assert (row["status"], row["worker"]) == ("in-progress", "w1")
    [spawned] = events(factory, "spawned")
    assert spawned.correlation == "0001"
    context = (factory / ".fac/runs/w1/context.md").read_text()
    assert "# Your delta: 0001 Count characters" in context and STATEMENT in context

    wt = factory / ".fac/worktrees/w1"
    commit(wt, CHAR_COUNT, "char_count")
    submit("w1")
    run_queue(factory)

    # Merged with its trailer, accepted on main, folded by a factory commit through the queue: done.
    w1_merge = next(m for m in merge_commits(factory) if "Fac-Worker: w1" in m)
    assert "Fac-Delta: 0001" in w1_merge.splitlines()
    assert entries(factory)["factory"].state == "merged"
    assert [e.kind for e in Factory(factory).store.events() if e.correlation == "0001"] == [
        "delta-proposed",
        "delta-approved",
        "delta-in-progress",
        "spawned",
        "delta-merged",
        "delta-fold",
        "delta-done",
    ]
    done = fac_json("delta", "show", "1")
    assert (done["status"], done["file_status"]) == ("done", "done")
    spec = on_main(factory, SPEC)
    folded = [line for line in spec.splitlines() if "char_count" in line]
    assert folded == [f"- {STATEMENT} {{#char-count-text-return-number-characters}}"]
    assert "## Count characters (delta 0001)" in spec
    fold = git(factory, "log", "-1", "--format=%H", "--author=fac factory", "main")
    assert git(factory, "diff", "--name-only", f"{fold}^", fold).split() == [SPEC, path]
    assert git(factory, "status", "--porcelain") == ""

    state = fac_json("state")
    assert state["ok"] and state["deltas"] == []
    assert state["ran"] == []  # the gate recorded per-test outcomes for exactly this tree
    assert {r["id"]: r["status"] for r in state["current"]}[
        "char-count-text-return-number-characters"
    ] == "pass"


def test_an_agent_may_propose_a_delta_but_never_approve_or_reject_it(factory: Path) -> None:
    head = git(factory, "rev-parse", "main")
    agent = {"FAC_WORKER": "w1"}

    proc = run_fac(
        "delta",
        "new",
        "Count lines faster",
        "--statement",
        "`line_count` SHOULD be O(n). Reason: texts can be large.",
        "--json",
        env=agent,
    )
    assert proc.returncode == 0, proc.stderr
    proposed = json.loads(proc.stdout)

    assert (proposed["status"], proposed["on_main"], proposed["owner"]) == ("proposed", False, "w1")
    assert git(factory, "rev-parse", "main") == head  # an agent never writes main
    assert [d["id"] for d in fac_json("delta", "ls")] == ["0001"]
    assert_usage_error(
        run_fac("delta", "approve", "1", env=agent), "agents may propose deltas", "not approve"
    )
    assert_usage_error(run_fac("delta", "reject", "1", env=agent), "not reject")
    assert fac_json("delta", "show", "1")["status"] == "proposed"

    approved = fac_json("delta", "approve", "1")  # a human

    assert (approved["status"], approved["on_main"]) == ("approved", True)
    assert 'owner = "w1"' in on_main(factory, approved["path"])


def test_spawn_refuses_a_delta_a_human_has_not_approved(factory: Path) -> None:
    fac_ok("delta", "new", "Count characters", "--check", f"tests::{TEST}")

    proc = run_fac("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "sleep 600", "--delta", "1")

    assert_usage_error(proc, "delta 0001 is proposed", "fac delta approve 0001")
    assert fac_json("status")["workers"] == []


def test_a_rejected_delta_keeps_its_reason_on_main(factory: Path) -> None:
    path = fac_json("delta", "new", "Count emoji", "--check", "tests")["path"]
    (factory / path).write_text((factory / path).read_text() + "Notes not committed yet.\n")
    assert_usage_error(
        run_fac("delta", "reject", "1"), f"{path} has edits that are not on main", "git commit"
    )
    git(factory, "checkout", path)

    rejected = fac_json("delta", "reject", "1", "--reason", "out of scope")

    assert rejected["status"] == "rejected"
    text = on_main(factory, rejected["path"])
    assert 'status = "rejected"' in text and 'reason = "out of scope"' in text
    assert_usage_error(run_fac("delta", "approve", "1"), "only a proposed delta can be approved")


def test_delta_new_lints_its_statements_first(factory: Path) -> None:
    head = git(factory, "rev-parse", "main")

    proc = run_fac("delta", "new", "Vague", "--statement", "Output should be short.")

    assert_usage_error(proc, "'should' is not in capitals", "write SHOULD")
    assert_usage_error(run_fac("delta", "new", "Nothing"), "states nothing")
    assert_usage_error(
        run_fac("delta", "new", "Typo", "--check", "test"), "check 'test', which does not exist"
    )
    assert git(factory, "rev-parse", "main") == head


def test_a_worker_cannot_change_specs(factory: Path) -> None:
    spec = (factory / SPEC).read_text()
    commit(
        spawn_worker(factory, "w1"), {SPEC: spec.replace("MUST NOT count", "MAY count")}, "w1: relax the spec"
    )
    submit("w1")
    main = git(factory, "rev-parse", "main")

    run_queue(factory)

    e = entries(factory)["w1"]
    assert e.state == "red"
    failed = {f["name"]: f["feedback"] for f in e.verdict["failed"]}
    assert f"{SPEC}: protected" in failed["guard:protected"]
    assert git(factory, "rev-parse", "main") == main


def test_a_branch_that_breaks_a_spec_link_is_red_with_the_spec_line(factory: Path) -> None:
    tests = f"{SUT}/tests/test_textstats.py"
    text = (factory / tests).read_text().replace("test_top_words_breaks_ties_alphabetically", "test_ties")
    commit(spawn_worker(factory, "w1"), {tests: text}, "w1: rename a test")
    submit("w1")

    run_queue(factory)

    e = entries(factory)["w1"]
    failed = {f["name"]: f["feedback"] for f in e.verdict["failed"]}
    assert (
        f"{SPEC}:17: links to test 'test_top_words_breaks_ties_alphabetically'" in failed["guard:spec-lint"]
    )
    assert "fix: " in failed["guard:spec-lint"]


def test_the_factory_exemption_is_narrow(factory: Path) -> None:
    main = git(factory, "rev-parse", "main")
    specs_only = repo.build_commit(factory, main, {SPEC: "# empty\n"}, "specs only")
    sneaky = repo.build_commit(factory, main, {SPEC: "# empty\n", f"{SUT}/x.py": "x = 1\n"}, "sneaky")

    assert guards.factory_guards(factory, main, specs_only).ok
    report = guards.factory_guards(factory, main, sneaky)
    assert not report.ok and f"{SUT}/x.py: outside specs/" in report.results[0].feedback

    # An entry that merely calls itself "factory" is judged like any worker: fac did not make it.
    fac = Factory(factory)
    fac.store.enqueue(deltas.FACTORY, deltas.fold_branch("0009"), specs_only, "0009")
    run_queue(factory)
    e = entries(factory)["factory"]
    assert e.state == "red" and "guard:protected" in [f["name"] for f in e.verdict["failed"]]
    assert git(factory, "rev-parse", "main") == main


def test_the_fold_replaces_removes_and_adds_statements(tmp_path: Path) -> None:
    (tmp_path / "specs/current").mkdir(parents=True)
    (tmp_path / "specs/deltas").mkdir(parents=True)
    (tmp_path / SPEC).write_text(
        "# T\n\n- A MUST hold. {#a}\n- B MUST hold,\n  over two lines. {#b}\n- C MUST hold. {#c}\n"
    )
    delta = (
        '+++\nid = "0004"\ntitle = "Change things"\nstatus = "merged"\nremoves = ["c"]\n+++\n'
        "- A MUST hold twice. {#a}\n- D MUST hold. [check: tests]\n"
    )
    (tmp_path / "specs/deltas/0004-change-things.md").write_text(delta)
    d = deltafiles.parse("specs/deltas/0004-change-things.md", delta)

    out = deltafiles.fold_changes(specs.DirSource(tmp_path), d)

    assert out[SPEC] == (
        "# T\n\n- A MUST hold twice. {#a}\n- B MUST hold,\n  over two lines. {#b}\n\n"
        "## Change things (delta 0004)\n\n- D MUST hold. [check: tests] {#d-hold}\n"
    )
    assert 'status = "done"' in out[d.path] and out[d.path].endswith("- D MUST hold. [check: tests]\n")


def test_two_deltas_merged_together_are_folded_one_after_the_other(factory: Path) -> None:
    script_suite(factory, {"ok": "#!/bin/sh\nexit 0\n"})
    for n, word in ((1, "Alpha"), (2, "Beta")):
        fac_ok("delta", "new", f"{word} exists", "--statement", f"{word} MUST exist. [check: ok]")
        fac_ok("delta", "approve", str(n))
        wt = Path(start_worker(factory, f"w{n}", delta=str(n))["worktree"])
        commit(wt, {f"{SUT}/{word.lower()}.txt": word}, f"w{n}: {word}")
        submit(f"w{n}")

    run_queue(factory)

    assert [d["status"] for d in fac_json("delta", "ls")] == ["done", "done"]
    folds = [e for e in Factory(factory).store.queue() if e.worker == deltas.FACTORY]
    assert [(e.delta, e.state) for e in folds] == [("0001", "merged"), ("0002", "merged")]
    spec = on_main(factory, SPEC)
    assert "- Alpha MUST exist. [check: ok] {#alpha-exist}" in spec
    assert "- Beta MUST exist. [check: ok] {#beta-exist}" in spec


def test_a_new_delta_that_does_not_lint_names_the_problem_not_a_draft_file(factory: Path) -> None:
    from helpers import assert_usage_error, run_fac

    proc = run_fac(
        "delta",
        "new",
        "Add multiply",
        "--statement",
        "`multiply` MUST multiply. [check: nosuch]",
        cwd=factory,
    )
    assert_usage_error(
        proc, "links to check 'nosuch', which does not exist", "define [checks.nosuch]", "tests"
    )
    assert "0000" not in proc.stderr
