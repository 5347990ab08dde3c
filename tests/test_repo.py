"""repo.py, the one place fac runs git: reading blobs, building commits off to the side, dirtiness."""

from __future__ import annotations

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
