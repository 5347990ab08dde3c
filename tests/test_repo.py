"""repo.py, the one place fac runs git: reading blobs, building commits off to the side, dirtiness."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import git

from supervisor import repo


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    root = tmp_path / "r"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "a.txt").write_text("alpha\n")
    (root / "d").mkdir()
    (root / "d" / "b.md").write_text("bravo ü\n")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_read_blobs_returns_the_blobs_and_skips_missing_paths_and_trees(repo_root: Path) -> None:
    out = repo.read_blobs(repo_root, "main", ["a.txt", "missing.txt", "d", "d/b.md"])
    assert out == {"a.txt": "alpha\n", "d/b.md": "bravo ü\n"}
    assert repo.read_blobs(repo_root, "main", []) == {}


def test_a_failed_git_read_raises_instead_of_answering_nothing(tmp_path: Path) -> None:
    with pytest.raises(repo.GitError):
        repo.blob(tmp_path, "0" * 40)
    with pytest.raises(repo.GitError, match="cat-file"):
        repo.read_blobs(tmp_path, "main", ["a.txt"])  # not a repository


def test_blob_reads_bytes_by_sha(repo_root: Path) -> None:
    sha = git(repo_root, "rev-parse", "main:a.txt")
    assert repo.blob(repo_root, sha) == b"alpha\n"


def test_build_commit_touches_neither_the_checkout_nor_the_index(repo_root: Path) -> None:
    main = git(repo_root, "rev-parse", "main")
    sha = repo.build_commit(repo_root, main, {"a.txt": "changed\n", "new/c.txt": "charlie\n"}, "side\n")
    assert git(repo_root, "rev-parse", f"{sha}^") == main
    assert repo.read_blobs(repo_root, sha, ["a.txt", "new/c.txt", "d/b.md"]) == {
        "a.txt": "changed\n",
        "new/c.txt": "charlie\n",
        "d/b.md": "bravo ü\n",
    }
    assert git(repo_root, "rev-parse", "main") == main
    assert (repo_root / "a.txt").read_text() == "alpha\n" and not repo.is_dirty(repo_root)


def test_is_dirty_sees_staged_unstaged_and_untracked_changes_but_not_ignored_ones(repo_root: Path) -> None:
    (repo_root / ".gitignore").write_text("*.log\n")
    git(repo_root, "add", ".gitignore")
    git(repo_root, "commit", "-q", "-m", "ignore logs")
    (repo_root / "x.log").write_text("noise\n")
    assert not repo.is_dirty(repo_root)
    (repo_root / "new.txt").write_text("untracked\n")
    assert repo.is_dirty(repo_root)
    (repo_root / "new.txt").unlink()
    (repo_root / "a.txt").write_text("edited\n")
    assert repo.is_dirty(repo_root)
    git(repo_root, "add", "a.txt")
    assert repo.is_dirty(repo_root)


def test_git_path_is_absolute_and_none_outside_a_repository(repo_root: Path, tmp_path: Path) -> None:
    assert repo.git_path(repo_root, "info/exclude") == repo_root / ".git" / "info" / "exclude"
    assert repo.git_path(tmp_path, "info/exclude") is None


# --- every git call is hardened: what a worker plants in the shared .git never runs ---


@pytest.mark.parametrize(
    ("attributes", "config", "expected"),
    [
        ("", "", {"merge": set(), "filter": set()}),
        ("*.py merge=lie filter=hide -diff\n", "", {"merge": {"lie"}, "filter": {"hide"}}),
        ("# *.py merge=commented\n", "", {"merge": set(), "filter": set()}),
        ("* merge=union\n*.bin merge=binary\n", "", {"merge": set(), "filter": set()}),  # git's own
        ("", '[merge "drv"]\n\tdriver = x\n[filter "f"]\n', {"merge": {"drv"}, "filter": {"f"}}),
        ("", "[Merge.Old]\n\tdriver = x\n", {"merge": {"Old"}, "filter": set()}),
        ("", '[diff "tc"]\n\ttextconv = x\n', {"merge": set(), "filter": set()}),  # --no-textconv
    ],
)
def test_driver_names_come_from_the_shared_attributes_and_config(
    attributes: str, config: str, expected: dict[str, set[str]]
) -> None:
    assert repo.driver_names(attributes, config) == expected


def test_neutralizers_switch_every_named_driver_off() -> None:
    out = repo.neutralizers({"merge": {"lie"}, "filter": {"hide", "bad name;rm"}})
    assert out[0::2] == ["-c"] * 5
    assert out[1::2] == [
        "filter.hide.clean=",
        "filter.hide.smudge=",
        "filter.hide.process=",
        "filter.hide.required=false",
        "merge.lie.driver=git merge-file --marker-size=%L %A %O %B",
    ]


def test_hooks_fsmonitor_and_filters_planted_in_the_shared_git_never_run(
    repo_root: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    hooks = repo_root / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    for hook in ("reference-transaction", "post-index-change", "post-checkout"):
        (hooks / hook).write_text(f"#!/bin/sh\necho {hook} >> {marker}\n")
        (hooks / hook).chmod(0o755)
    monitor = tmp_path / "monitor"
    monitor.write_text(f"#!/bin/sh\necho fsmonitor >> {marker}\n")
    monitor.chmod(0o755)
    (repo_root / ".git" / "info").mkdir(exist_ok=True)
    (repo_root / ".git" / "info" / "attributes").write_text("* filter=lie\n")
    git(repo_root, "config", "core.fsmonitor", str(monitor))
    git(repo_root, "config", "filter.lie.clean", f"sh -c 'echo clean >> {marker}; cat'")
    git(repo_root, "config", "filter.lie.smudge", f"sh -c 'echo smudge >> {marker}; cat'")
    (repo_root / "a.txt").write_text("changed\n")  # a dirty file: status must hash it

    head = git(repo_root, "rev-parse", "main")
    new = repo.build_commit(repo_root, head, {"c.txt": "charlie\n"}, "second")
    assert repo.update_ref_cas(repo_root, "refs/heads/side", new, "0" * 40)
    assert repo.is_dirty(repo_root)
    assert repo.show_file(repo_root, "side", "c.txt") == "charlie\n"
    repo.git(repo_root, "worktree", "add", "--quiet", "--detach", str(tmp_path / "wt"), "side")
    assert (tmp_path / "wt" / "c.txt").read_text() == "charlie\n"

    assert not marker.exists(), marker.read_text()
    # The same plants do run under plain git: the test would notice if they were not live.
    git(repo_root, "status", "--porcelain")
    assert marker.exists()


def test_trusted_reads_ignore_the_checkouts_gitattributes(repo_root: Path) -> None:
    (repo_root / ".gitattributes").write_text("*.txt -diff\n")
    git(repo_root, "add", ".gitattributes")
    git(repo_root, "commit", "-q", "-m", "attrs")
    (repo_root / "a.txt").write_text("alpha\nbeta\n")
    git(repo_root, "commit", "-qam", "beta")
    assert "Binary files" in git(repo_root, "diff", "HEAD~1", "HEAD")
    shown = repo.git(repo_root, "diff", *repo.DIFF_OPTIONS, "HEAD~1", "HEAD", trusted=True)
    assert "+beta" in shown
    [change] = repo.changes(repo_root, "HEAD~1", "HEAD")
    assert (change.status, change.path, change.new_mode) == ("M", "a.txt", "100644")


def test_rev_parse_all_answers_as_rev_parse_does_ref_by_ref_in_one_process(repo_root: Path) -> None:
    git(repo_root, "tag", "v1")
    git(repo_root, "tag", "-a", "v2", "-m", "annotated")  # peels to the commit
    refs = ["main", "refs/heads/main", "v1", "v2", "HEAD~0", "refs/heads/nope", "main^{tree}", "a b", "--all"]
    assert repo.rev_parse_all(repo_root, refs) == [repo.rev_parse(repo_root, ref) for ref in refs]
    sha = repo.rev_parse(repo_root, "main")
    assert repo.rev_parse_all(repo_root, ["main", "nope", "v2"]) == [sha, None, sha]
    assert repo.rev_parse_all(repo_root, []) == []


def test_git_waits_out_a_worktree_being_added_and_still_fails_on_one_that_stays(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from supervisor import worktrees

    agent = tmp_path / "agent"
    worktrees.add(repo_root, agent, "fac/a", "main", main="main")
    (agent / "new.txt").write_text("new\n")
    git(agent, "add", "new.txt")
    git(agent, "commit", "-q", "-m", "new")
    # The moment inside `git worktree add` (a gate run's checkout) when the new worktree's HEAD is
    # still git's placeholder, the null id: a fetch walking every worktree's HEAD fails on it.
    entry = repo_root / ".git" / "worktrees" / "cand-x"
    entry.mkdir(parents=True)
    (entry / "HEAD").write_text("0" * 40 + "\n")
    (entry / "commondir").write_text("../..\n")
    (entry / "gitdir").write_text(f"{tmp_path / 'cand-x' / '.git'}\n")
    refspec = "+refs/heads/fac/a:refs/heads/fac/a"
    plain = subprocess.run(  # git itself, not fac's wrapper
        ["git", "-C", str(repo_root), "fetch", "--quiet", str(agent / ".git"), refspec], capture_output=True
    )
    assert plain.returncode != 0 and b"bad object worktrees/cand-x/HEAD" in plain.stderr

    # git writes the real HEAD a moment later: the fetch waits for it and succeeds.
    settle = threading.Timer(
        0.3, lambda: (entry / "HEAD").write_text(git(repo_root, "rev-parse", "main") + "\n")
    )
    settle.start()
    try:
        assert worktrees.collect(repo_root, agent, "fac/a") == git(agent, "rev-parse", "HEAD")
    finally:
        settle.join()

    # A placeholder that never goes away (a worktree add killed midway) still fails, after the wait.
    (entry / "HEAD").write_text("0" * 40 + "\n")
    monkeypatch.setattr(repo, "WORKTREE_SETTLE", 0.2)
    with pytest.raises(repo.GitError, match="bad object worktrees/cand-x/HEAD"):
        worktrees.collect(repo_root, agent, "fac/a")
