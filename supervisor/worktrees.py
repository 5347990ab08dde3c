"""Worker worktrees through GitPython: `.fac/worktrees/<worker>` on branch `fac/<worker>`."""

from __future__ import annotations

import shutil
from pathlib import Path

from supervisor.errors import FacError

BRANCH_PREFIX = "fac/"


def branch_for(worker: str) -> str:
    return f"{BRANCH_PREFIX}{worker}"


def _repo(root: Path):
    import git

    return git.Repo(root)


def add(root: Path, path: Path, branch: str, base: str) -> None:
    """Create `branch` at `base` and check it out in a new worktree at `path`."""
    import git

    repo = _repo(root)
    try:
        repo.git.rev_parse("--verify", "--quiet", f"{base}^{{commit}}")
    except git.GitCommandError:
        raise FacError(
            f"base {base!r} is not a commit in {root}", hint="pass --base with a branch, tag or sha"
        ) from None
    if branch_exists(root, branch):
        raise FacError(
            f"branch {branch} already exists",
            hint=f"remove it (git branch -D {branch}) or pick another worker name",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        repo.git.worktree("add", "--quiet", "-b", branch, str(path), base)
    except git.GitCommandError as e:
        raise FacError(f"git worktree add failed: {e.stderr.strip()}") from None


def branch_exists(root: Path, branch: str) -> bool:
    import git

    try:
        _repo(root).git.show_ref("--verify", "--quiet", f"refs/heads/{branch}")
        return True
    except git.GitCommandError:
        return False


def is_dirty(path: Path) -> bool:
    """Uncommitted changes (tracked or untracked) in a worktree."""
    if not path.exists():
        return False
    return _repo(path).is_dirty(untracked_files=True)


def remove(root: Path, path: Path, branch: str | None) -> str | None:
    """Remove the worktree and delete the branch; returns the branch's last sha (to recover it)."""
    import git

    repo = _repo(root)
    if path.exists():
        try:
            repo.git.worktree("remove", "--force", str(path))
        except git.GitCommandError:
            shutil.rmtree(path, ignore_errors=True)
    repo.git.worktree("prune")
    sha = None
    if branch and branch_exists(root, branch):
        sha = repo.git.rev_parse(f"refs/heads/{branch}")
        repo.git.branch("-D", branch)
    return sha
