"""Human gates, judgment checks and the sandbox checks run in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import assert_usage_error, fac_json, fac_ok, git, run_fac
from queue_helpers import commit, passing_test

from supervisor import sandbox
from supervisor.factory import Factory
from supervisor.queue import MergeQueue


def configure(root: Path, text: str, section_text: str = "") -> None:
    with open(root / "factory.toml", "a", encoding="utf-8") as f:
        f.write("\n" + text)
    git(root, "commit", "-qam", "configure")


def spawn(root: Path, name: str) -> Path:
    fac_ok("spawn", "worker", "--no-up", "--name", name, "--cmd", "sleep 600", cwd=root)
    return root / ".fac" / "worktrees" / name


def test_approval_paths_hold_a_branch_until_a_human_approves_it(factory: Path) -> None:
    toml = (
        (factory / "factory.toml")
        .read_text()
        .replace("[queue]\n", '[queue]\napproval_paths = ["system-under-construction/textstats/**"]\n')
    )
    (factory / "factory.toml").write_text(toml)
    git(factory, "commit", "-qam", "approval paths")
    wt = spawn(factory, "w1")
    commit(wt, {"system-under-construction/textstats/extra.py": "X = 1\n"})
    fac_ok("submit", "--worker", "w1", cwd=factory)
    fac = Factory(factory)
    MergeQueue(fac).run(once=True)
    (entry,) = fac.store.queue()
    assert entry.state == "held"
    assert fac.store.count_runs() == 0, "a held branch is not tested"
    assert "fac approve fac/w1" in fac.store.messages("w1")[-1].body

    assert_usage_error(
        run_fac("approve", "fac/w1", cwd=factory, env={"FAC_WORKER": "w1"}), "approval is the human gate"
    )
    fac_ok("approve", "fac/w1", cwd=factory)
    MergeQueue(fac).run(once=True)
    assert fac.store.queue()[0].state == "merged"
    # A new commit on the branch needs a new approval.
    commit(wt, {"system-under-construction/textstats/extra.py": "X = 2\n"})
    fac_ok("submit", "--worker", "w1", cwd=factory)
    MergeQueue(fac).run(once=True)
    assert fac.store.queue()[-1].state == "held"


def test_llm_review_without_a_key_is_skipped_unless_required(
    factory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    configure(factory, '[checks.review]\nrun = "fac llm-review"\nkind = "judgment"\n')
    wt = spawn(factory, "w1")
    commit(wt, passing_test("reviewed"))
    report = fac_json("check", "--worker", "w1", cwd=factory)
    review = next(r for r in report["results"] if r["name"] == "review")
    assert review["ok"] and review["required"] is False
    assert "skipped: no API key" in review["tail"]

    configure(factory, "required = true\n")  # appended into [checks.review]; the gate reads main's copy
    proc = run_fac("check", "--worker", "w1", "--stage", "gate", "--json", cwd=factory)
    assert proc.returncode == 1
    assert "this check is required" in proc.stdout


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed on this machine")
def test_checks_run_in_bubblewrap_with_a_read_only_root_and_no_network(factory: Path) -> None:
    probe = factory / "checks" / "sandbox-probe"
    probe.write_text(
        "#!/usr/bin/env bash\n"
        'touch "$HOME/escaped" 2>/dev/null && { echo wrote outside the tree; exit 1; }\n'
        "touch inside-ok || { echo cannot write the tree under test; exit 1; }\n"
        "(exec 3<>/dev/tcp/127.0.0.1/9) 2>/dev/null; "
        "python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), 2)' "
        "2>/dev/null && { echo network reachable; exit 1; }\n"
        "echo sandboxed\n"
    )
    probe.chmod(0o755)
    git(factory, "add", "-A")
    git(factory, "commit", "-qm", "a check that probes its sandbox")
    sb = sandbox.detect(factory)
    assert sb.kind == "bwrap"
    report = fac_json("check", "--ref", "main", "--stage", "gate", cwd=factory)
    assert report["sandbox"].startswith("bwrap")
    probe_result = next(r for r in report["results"] if r["name"] == "sandbox-probe")
    assert probe_result["ok"], probe_result["tail"]
    assert "sandboxed" in probe_result["tail"]


def test_fac_sandbox_none_runs_plainly_and_says_so(factory: Path) -> None:
    report = fac_json("check", "--ref", "main", "--stage", "gate", cwd=factory, env={"FAC_SANDBOX": "none"})
    assert report["sandbox"] == "none: host (FAC_SANDBOX=none)"
    assert_usage_error(
        run_fac("check", "--ref", "main", cwd=factory, env={"FAC_SANDBOX": "jail"}), "FAC_SANDBOX"
    )


def test_llm_review_asks_the_model_and_turns_its_verdict_into_the_check(
    factory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from supervisor.fake_anthropic import DEFAULT_KEY, FakeAnthropic, text, turn

    configure(factory, '[checks.review]\nrun = "fac llm-review"\nkind = "judgment"\nrequired = true\n')
    wt = spawn(factory, "w1")
    commit(wt, passing_test("reviewed"), "add a test")
    with FakeAnthropic() as fake:
        env = {"ANTHROPIC_BASE_URL": fake.url, "ANTHROPIC_API_KEY": DEFAULT_KEY}
        fake.add(
            turn(text('{"verdict": "fail", "review": "tests/test_reviewed.py:2 asserts nothing useful"}'))
        )
        proc = run_fac("check", "--worker", "w1", "--stage", "gate", "--json", cwd=factory, env=env)
        assert proc.returncode == 1
        review = next(r for r in json.loads(proc.stdout)["results"] if r["name"] == "review")
        assert not review["ok"] and "asserts nothing useful" in review["tail"]
        sent = fake.requests[-1]["messages"][0]["content"]
        assert (
            "test_reviewed" in sent and "You are a worker in a software factory" in sent
        )  # diff + role rules

        fake.add(turn(text('{"verdict": "pass", "review": "small and tested"}')))
        report = fac_json("check", "--worker", "w1", "--stage", "gate", cwd=factory, env=env)
        assert next(r for r in report["results"] if r["name"] == "review")["ok"]


def test_llm_review_reports_a_diff_git_cannot_make_instead_of_passing_it_as_empty(tmp_path: Path) -> None:
    from supervisor import repo, review

    with pytest.raises(repo.GitError, match="git diff"):
        review.gather(tmp_path, tmp_path, "main")  # not a repository: there is no change to judge
