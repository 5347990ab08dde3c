"""Candidates: a batch of branches merged onto main without a worktree (merge-tree, commit-tree),
one merge commit per branch, each naming its worker and queue entry."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor import repo
from supervisor.model import QueueEntry


@dataclass(frozen=True)
class Candidate:
    base: str
    sha: str
    tree: str
    entries: tuple[QueueEntry, ...]


def candidate_message(e: QueueEntry) -> str:
    lines = [f"Merge {e.branch} ({e.worker})", "", f"Fac-Worker: {e.worker}", f"Fac-Queue-Entry: {e.id}"]
    if e.delta:
        lines.append(f"Fac-Delta: {e.delta}")
    return "\n".join(lines) + "\n"


def build(root: Path, base: str, entries: Sequence[QueueEntry]) -> tuple[Candidate, list[QueueEntry]]:
    """Merge entries onto base one by one; an entry that conflicts only with another entry waits
    (it is returned as deferred)."""
    cur, taken, deferred = base, [], []
    ident = repo.identity_env(root)  # once per candidate, not twice per merge commit
    for e in entries:
        merged = repo.merge_tree(root, cur, e.sha)
        if merged.tree is None:
            deferred.append(e)
            continue
        cur = repo.commit_tree(root, merged.tree, [cur, e.sha], candidate_message(e), env=ident)
        taken.append(e)
    return Candidate(base, cur, repo.tree_of(root, cur), tuple(taken)), deferred
