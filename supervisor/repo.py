"""Git plumbing used by the queue and the guards: one thin wrapper over the `git` executable.

Plumbing calls go straight to `git` (a subprocess with an argument list, never a shell) because
they are many and small; worktree bookkeeping lives in `worktrees.py`.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import FacError

MIN_GIT = (2, 38)  # `git merge-tree --write-tree`
FAC_IDENTITY = {"name": "fac", "email": "fac@localhost"}


class GitError(FacError):
    pass


@functools.cache
def git_version() -> tuple[int, int]:
    exe = shutil.which("git")
    if exe is None:
        raise FacError("git is not installed", hint="install it: apt-get install -y git")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)", out)
    if not m:
        raise FacError(f"cannot read the git version from {out!r}", hint="install git >= 2.38")
    return int(m.group(1)), int(m.group(2))


def require_git() -> None:
    if git_version() < MIN_GIT:
        have = ".".join(map(str, git_version()))
        raise FacError(
            f"git {have} is too old: fac needs git >= 2.38 (for merge-tree --write-tree)",
            hint="upgrade git (Debian 12: apt-get install -y git; older systems: backports)",
        )


def git(
    root: Path, *args: str, check: bool = True, input: str | None = None, env: dict[str, str] | None = None
) -> str:
    """Run git in `root` and return stdout (stripped of the final newline)."""
    full_env = None
    if env:
        full_env = {**os.environ, **env}
    proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, input=input, env=full_env)
    if check and proc.returncode != 0:
        cmd = " ".join(["git", *args])
        raise GitError(f"`{cmd}` failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout.rstrip("\n")


def identity_env(root: Path) -> dict[str, str]:
    """An identity for commits fac makes itself, when git has none configured (fresh machines)."""
    env: dict[str, str] = {}
    if not git(root, "config", "user.name", check=False):
        env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = FAC_IDENTITY["name"]
    if not git(root, "config", "user.email", check=False):
        env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = FAC_IDENTITY["email"]
    return env


def rev_parse(root: Path, ref: str) -> str | None:
    proc = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def tree_of(root: Path, rev: str) -> str:
    return git(root, "rev-parse", f"{rev}^{{tree}}")


def is_ancestor(root: Path, a: str, b: str) -> bool:
    return subprocess.run(["git", "merge-base", "--is-ancestor", a, b], cwd=root).returncode == 0


def unmerged_count(root: Path, head: str, base: str) -> int:
    """How many commits `head` has that `base` does not (0 when base already contains it)."""
    out = git(root, "rev-list", "--count", f"{base}..{head}", check=False)
    return int(out) if out.isdigit() else 0


def merge_base(root: Path, a: str, b: str) -> str | None:
    out = git(root, "merge-base", a, b, check=False)
    return out or None


@dataclass(frozen=True)
class MergeResult:
    tree: str | None  # None when the merge conflicts
    conflicts: tuple[str, ...] = ()


def merge_tree(root: Path, ours: str, theirs: str) -> MergeResult:
    """Merge two commits without touching any worktree or index."""
    proc = subprocess.run(
        ["git", "merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs],
        cwd=root,
        capture_output=True,
        text=True,
    )
    lines = proc.stdout.splitlines()
    if proc.returncode == 0:
        return MergeResult(tree=lines[0].strip())
    if proc.returncode == 1:
        paths = tuple(dict.fromkeys(line for line in lines[1:] if line.strip()))
        return MergeResult(tree=None, conflicts=paths)
    raise GitError(f"git merge-tree {ours} {theirs} failed: {proc.stderr.strip()}")


def commit_tree(
    root: Path, tree: str, parents: list[str], message: str, env: dict[str, str] | None = None
) -> str:
    """A commit of `tree` on `parents`; `env` defaults to `identity_env` (pass it once when making many)."""
    args = ["commit-tree", tree]
    for p in parents:
        args += ["-p", p]
    return git(root, *args, input=message, env=identity_env(root) if env is None else env).strip()


def update_ref_cas(root: Path, ref: str, new: str, old: str) -> bool:
    """Move `ref` to `new` only if it still points at `old` (compare-and-swap)."""
    proc = subprocess.run(["git", "update-ref", ref, new, old], cwd=root, capture_output=True, text=True)
    return proc.returncode == 0


def read_tree(root: Path, old: str, new: str, *, dry_run: bool = False) -> bool:
    """Two-tree merge of the index and checkout from `old` to `new` (`read-tree -m -u`); False when it
    would overwrite local edits. With `dry_run`, only tell whether it would succeed."""
    args = ["git", "read-tree", *(["-n"] if dry_run else []), "-m", "-u", old, new]
    return subprocess.run(args, cwd=root, capture_output=True).returncode == 0


def changed_paths(root: Path, base: str, head: str) -> list[tuple[str, str]]:
    """(status, path) for each path `head` changes relative to `base`; renames count as both paths."""
    out = git(root, "diff", "--name-status", "--no-renames", "-z", base, head)
    parts = [p for p in out.split("\0") if p]
    return [(parts[i], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]


def branch_heads(root: Path, prefix: str = "refs/heads/") -> dict[str, str]:
    """Every branch under `prefix` and its sha, in one git call (not one per branch)."""
    out = git(root, "for-each-ref", "--format=%(refname) %(objectname)", prefix, check=False)
    pairs = (line.split(" ", 1) for line in out.splitlines() if " " in line)
    return {ref.removeprefix("refs/heads/"): sha for ref, sha in pairs}


def show_file(root: Path, rev: str, path: str) -> str | None:
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, capture_output=True)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", errors="replace")


def blob(root: Path, sha: str) -> bytes:
    """The bytes of blob `sha`."""
    proc = subprocess.run(["git", "cat-file", "blob", sha], cwd=root, capture_output=True)
    if proc.returncode != 0:
        raise GitError(f"`git cat-file blob {sha}` failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def read_blobs(root: Path, rev: str, paths: list[str]) -> dict[str, str]:
    """The text of each of `paths` at `rev` that is a blob there, through one `git cat-file --batch`."""
    if not paths:
        return {}
    query = "".join(f"{rev}:{p}\n" for p in paths).encode()
    proc = subprocess.run(["git", "cat-file", "--batch"], cwd=root, input=query, capture_output=True)
    if proc.returncode != 0:
        raise GitError(
            f"`git cat-file --batch` at {rev} failed: {proc.stderr.decode(errors='replace').strip()}"
        )
    data = proc.stdout
    out, pos = {}, 0
    for p in paths:
        nl = data.index(b"\n", pos)
        header = data[pos:nl].split()
        pos = nl + 1
        if len(header) < 3:
            continue  # "<rev>:<path> missing": no contents follow
        size = int(header[2])
        if header[1] == b"blob":
            out[p] = data[pos : pos + size].decode("utf-8", errors="replace")
        pos += size + 1  # a tree's contents follow too: skip them
    return out


def build_commit(
    root: Path, parent: str, changes: dict[str, str], message: str, env: dict[str, str] | None = None
) -> str:
    """A commit on `parent` with `changes` (path -> text), made without touching any checkout or index."""
    with tempfile.TemporaryDirectory(prefix="fac-index-") as tmp:
        ienv = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(root, "read-tree", parent, env=ienv)
        for path, text in changes.items():
            sha = git(root, "hash-object", "-w", "--stdin", input=text)
            git(root, "update-index", "--add", "--cacheinfo", f"100644,{sha},{path}", env=ienv)
        tree = git(root, "write-tree", env=ienv)
    return commit_tree(root, tree, [parent], message, env={**identity_env(root), **(env or {})})


def git_path(worktree: Path, name: str) -> Path | None:
    """Where `$GIT_DIR/<name>` is for `worktree` (absolute); None when it is not a git worktree."""
    proc = subprocess.run(
        ["git", "rev-parse", "--git-path", name], cwd=worktree, capture_output=True, text=True
    )
    if proc.returncode != 0:
        return None
    path = Path(proc.stdout.strip())
    return path if path.is_absolute() else worktree / path


def ls_tree(root: Path, rev: str, path: str = "") -> list[tuple[str, str, str]]:
    """(mode, sha, path) of the blobs under `path` at `rev`."""
    args = ["ls-tree", "-r", "-z", rev]
    if path:
        args += ["--", path]
    out = git(root, *args)
    rows = []
    for item in out.split("\0"):
        if not item:
            continue
        meta, name = item.split("\t", 1)
        mode, _type, sha = meta.split()
        rows.append((mode, sha, name))
    return rows


def is_dirty(worktree: Path) -> bool:
    """Uncommitted changes in `worktree`: staged, unstaged, or untracked files that are not ignored."""
    return bool(git(worktree, "status", "--porcelain", "-z", "--untracked-files=normal"))


def current_branch(root: Path) -> str | None:
    out = git(root, "symbolic-ref", "--quiet", "HEAD", check=False)
    return out.removeprefix("refs/heads/") if out else None
