"""Worker worktrees: `.fac/worktrees/<worker>` on branch `fac/<worker>`, and throw-away detached ones.

A worker's tree is a git repository of its own (an *agent repository*): its objects borrow the
factory's read-only through `objects/info/alternates`, and its refs, config, hooks and new objects
are its own, so nothing an agent does to its git can touch the factory's. It holds `fac/<worker>`
and a `main` that fac keeps current (`publish_main`); `collect` fetches the agent's head into the
factory's `refs/heads/fac/<worker>` (fetching runs no program of the agent's repository: git's
upload-pack is safe on an untrusted one). Worktrees made by older fac (linked worktrees of the
factory) keep working as before.

Every question goes to `git` through repo.py: these run in short `fac` commands (spawn, submit,
kill --rm), where importing GitPython alone would cost more than the `git` call it wraps.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from supervisor import repo
from supervisor.errors import FacError

BRANCH_PREFIX = "fac/"
# git's worktree bookkeeping (.git/worktrees/<name>, picked and created by `git worktree add`) is
# not safe against itself: the queue's threads add and remove throw-away worktrees one at a time.
_WORKTREE_LOCK = threading.Lock()


@contextmanager
def detached(root: Path, path: Path, rev: str) -> Iterator[Path]:
    """A throw-away worktree of `rev` at `path` (no branch), removed however the block ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with _WORKTREE_LOCK:
        repo.git(root, "worktree", "add", "--quiet", "--detach", str(path), rev)
    try:
        yield path
    finally:
        with _WORKTREE_LOCK:
            repo.git(root, "worktree", "remove", "--force", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)


def branch_for(worker: str) -> str:
    return f"{BRANCH_PREFIX}{worker}"


def add(root: Path, path: Path, branch: str, base: str, main: str | None = None) -> None:
    """Create `branch` at `base` in the factory and an agent repository at `path` with `branch`
    checked out and `main` (the factory's main, when given) beside it."""
    # One git process for the three lookups a spawn needs.
    base_sha, taken, main_sha = repo.rev_parse_all(
        root, [base, f"refs/heads/{branch}", f"refs/heads/{main}" if main else "HEAD"]
    )
    if not main:
        main_sha = None
    if base_sha is None:
        raise FacError(
            f"base {base!r} is not a commit in {root}", hint="pass --base with a branch, tag or sha"
        )
    if taken is not None:
        raise FacError(
            f"branch {branch} already exists",
            hint=f"remove it (git branch -D {branch}) or pick another worker name",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        repo.git(root, "branch", "--no-track", branch, base_sha)
        # No template: nothing from the user's init.templateDir (hooks, say) reaches the agent's
        # repository, and no sample files are copied.
        repo.git(root, "init", "--quiet", "--template=", f"--initial-branch={branch}", str(path))
        info = path / ".git" / "objects" / "info"
        info.mkdir(parents=True, exist_ok=True)
        (info / "alternates").write_text(f"{repo.common_dir(root) / 'objects'}\n", encoding="utf-8")
        # Loose ref files, written straight into the repository fac has just made (one git call less
        # per spawn than update-ref): the branch HEAD names, and main beside it.
        heads = path / ".git" / "refs" / "heads"
        for name, sha in ((branch, base_sha), *(((main, main_sha),) if main and main_sha else ())):
            ref = heads / name
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(f"{sha}\n", encoding="ascii")
        # Parallel checkout, one worker per core (git 2.32+, and fac needs 2.38): on 2,000
        # files and 2 cores, about 0.8x the time of the one-process checkout `git worktree add` does.
        repo.git(path, "-c", "checkout.workers=0", "reset", "--quiet", "--hard")
    except repo.GitError as e:
        shutil.rmtree(path, ignore_errors=True)
        repo.git(root, "branch", "-D", branch, check=False)
        raise FacError(f"creating the agent repository at {path} failed: {e.message}") from None


def is_agent_repo(path: Path) -> bool:
    """Whether `path` is an agent repository (its own `.git` directory), not a linked worktree."""
    return (path / ".git").is_dir() and not (path / ".git").is_symlink()


def head(root: Path, path: Path, branch: str) -> str | None:
    """The worker's head: `branch` in its agent repository (the factory's branch for a linked one)."""
    if is_agent_repo(path):
        return repo.rev_parse(path, f"refs/heads/{branch}")
    return repo.rev_parse(root, f"refs/heads/{branch}")


# An agent repository's head as last shown: (path, branch) -> (what its ref files looked like, sha).
_SHOWN: dict[tuple[Path, str], tuple[tuple[tuple[int, int, int, int] | None, ...], str | None]] = {}


def _ref_stamp(git_dir: Path, branch: str) -> tuple[tuple[int, int, int, int] | None, ...]:
    """What the files that say where `branch` points look like, without reading them: inode, size,
    mtime and ctime (the agent can set a file's mtime back, never its ctime)."""
    out: list[tuple[int, int, int, int] | None] = []
    for f in (git_dir / "refs" / "heads" / branch, git_dir / "packed-refs"):
        try:
            st = f.stat()
        except OSError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


def shown_head(root: Path, path: Path, branch: str) -> str | None:
    """`head` for display (status, and the supervisor's dashboard on every pass, for every worker):
    in an agent repository git is asked again only when its ref files changed, one stat instead of
    one git process. Never for a decision: what guards data (`fac down --rm`) asks `head`."""
    if not is_agent_repo(path):
        return head(root, path, branch)
    key = (path, branch)
    stamp = _ref_stamp(path / ".git", branch)
    seen = _SHOWN.get(key)
    if seen is not None and seen[0] == stamp:
        return seen[1]
    sha = head(root, path, branch)
    _SHOWN[key] = (stamp, sha)
    return sha


def collect(root: Path, path: Path, branch: str) -> str | None:
    """Fetch `branch` from the agent repository at `path` into the factory's `refs/heads/<branch>`
    (forced: an agent may rebase) and return its sha; a linked worktree shares the factory's refs."""
    if not is_agent_repo(path):
        return repo.rev_parse(root, f"refs/heads/{branch}")
    if repo.rev_parse(path, f"refs/heads/{branch}") is None:
        return None
    ref = f"refs/heads/{branch}"
    _fetch_checked(root, path, f"+{ref}:{ref}")
    return repo.rev_parse(root, ref)


def _fetch_checked(root: Path, path: Path, refspec: str) -> None:
    # No gc or maintenance started by the fetch, every object checked: the agent wrote them.
    repo.git(
        root,
        *("-c", "gc.auto=0", "-c", "maintenance.auto=false", "-c", "transfer.fsckObjects=true"),
        *("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules"),
        str(path / ".git"),
        refspec,
    )


def collect_commit(root: Path, path: Path, worker: str, rev: str) -> str | None:
    """Fetch the commit `rev` names in the agent repository at `path` (one only its agent has, for
    `fac check --ref`) into the factory's `refs/fac/checked/<worker>`, checked as a submit's; its sha."""
    if not is_agent_repo(path):
        return None
    sha = repo.rev_parse(path, rev)
    if sha is None:
        return None
    ref = f"refs/fac/checked/{worker}"
    _fetch_checked(root, path, f"+{sha}:{ref}")
    return repo.rev_parse(root, ref)


FSCK_ERROR = re.compile(r"error: object ([0-9a-f]{7,64}): (\w+): (.+)")


def fsck_refusal(git_error: str) -> str | None:
    """What `transfer.fsckObjects` refused in a fetch's error, in a few words ("object 1a2b3c4d5e
    (hasDotgit: contains '.git')"); None when the fetch failed for another reason."""
    m = FSCK_ERROR.search(git_error)
    return f"object {m[1][:10]} ({m[2]}: {m[3].strip()})" if m else None


def publish_main(paths: list[Path], main: str, sha: str) -> None:
    """Point `main` in each agent repository at `sha` (after main moved), so `git merge main` in a
    pane merges the main the queue tests against. The ref file is replaced through directory handles
    opened without following links: an agent cannot aim this write at a file outside its repository."""
    line = f"{sha}\n".encode()
    for path in paths:
        if not is_agent_repo(path):
            continue
        fds: list[int] = []
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            fds.append(fd)
            for part in [".git", "refs", "heads", *main.split("/")[:-1]]:
                fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
                fds.append(fd)
            name = main.split("/")[-1]
            tmp = f".{name}.fac-{os.getpid()}"
            wfd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
            try:
                os.write(wfd, line)
            finally:
                os.close(wfd)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except OSError:
            continue  # a repository the agent broke keeps its own main; the queue judges the branch anyway
        finally:
            for f in reversed(fds):
                os.close(f)


def branch_exists(root: Path, branch: str) -> bool:
    return repo.rev_parse(root, f"refs/heads/{branch}") is not None


def is_dirty(path: Path) -> bool:
    """Uncommitted changes (tracked or untracked) in a worktree."""
    if not path.exists():
        return False
    repo.require_git()  # a missing git is a FacError with the fix, not a traceback
    return repo.is_dirty(path)


def remove(root: Path, path: Path, branch: str | None) -> str | None:
    """Remove the worktree and delete the branch; returns the branch's last sha (to recover it).

    An agent repository's head is fetched into the factory first, so that sha stays recoverable
    (`git branch NAME SHA` at the root) after its repository is gone."""
    sha = None
    if branch and is_agent_repo(path):
        try:
            sha = collect(root, path, branch)
        except repo.GitError:
            sha = None  # a broken repository: its branch in the factory is the last known head
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        try:
            repo.git(root, "worktree", "remove", "--force", str(path))
        except repo.GitError:
            shutil.rmtree(path, ignore_errors=True)
    repo.git(root, "worktree", "prune")
    sha = sha or (repo.rev_parse(root, f"refs/heads/{branch}") if branch else None)
    if branch and repo.rev_parse(root, f"refs/heads/{branch}"):
        repo.git(root, "branch", "-D", branch)
    return sha
