"""Submitting a worker's branch to the merge queue: what `fac submit` and the built-in agent's submit() do."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from supervisor import repo, worktrees
from supervisor.errors import FacError
from supervisor.factory import Factory


@dataclass(frozen=True)
class Submission:
    id: int
    worker: str
    branch: str
    sha: str
    position: int  # place among the open entries, 1-based
    superseded: list[int]  # older entries of this worker that this one replaces
    dirty: bool  # the worktree had uncommitted changes, which are not part of the submission

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def submit(fac: Factory, name: str) -> Submission:
    """Queue the worker's branch at its current head; only committed work is submitted.

    The head is fetched from the worker's own repository into the factory's `refs/heads/<branch>`
    first (`worktrees.collect`): the queue reads only the factory's refs."""
    w = fac.worker(name)
    try:
        head = worktrees.collect(fac.root, Path(w.worktree), w.branch)
    except repo.GitError as e:
        refused = worktrees.fsck_refusal(e.message)
        if refused:
            raise FacError(
                f"{w.branch} was not taken: git's object check refused {refused}; nothing reached the queue",
                hint="make the commits again with plain `git add` and `git commit`, then fac submit",
            ) from None
        raise FacError(
            f"cannot fetch {w.branch} from {name}'s repository: {e.message}",
            hint=f"check its repository: git -C {w.worktree} log -1 {w.branch}",
        ) from None
    if head is None:
        raise FacError(
            f"branch {w.branch} does not exist", hint=f"was it deleted? `fac kill {name} --rm` cleans up"
        )
    main = repo.rev_parse(fac.root, fac.main)
    if main and repo.is_ancestor(fac.root, head, main):
        raise FacError(
            f"nothing to submit: {w.branch} has no commits that {fac.main} lacks",
            hint="commit your work first (git add -A && git commit -m '...')",
        )
    dirty = worktrees.is_dirty(Path(w.worktree))
    qid, superseded = fac.store.enqueue(name, w.branch, head, w.delta)
    position = len(fac.store.queue(("queued", "testing")))
    return Submission(qid, name, w.branch, head, position, superseded, dirty)
