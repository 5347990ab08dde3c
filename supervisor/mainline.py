"""The only writer of main: a compare-and-swap of the branch, carrying the human's checkout along.

The merge queue lands tested candidates through it and the delta commands commit for humans
through it, and it records every sha it writes (`main_writes` in the store). `moved_outside`
compares main with the last recorded sha: anything else that moved main (a human's own commit, a
worker's `git update-ref` from its worktree) shows there, for the queue to judge before it builds
on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from supervisor import repo, worktrees
from supervisor.factory import Factory


@dataclass(frozen=True)
class OutsideMove:
    """Main moved, not through fac: from the last sha fac recorded to what main is now, and what the
    new tip says of itself (its author and subject; `commits` since `old`, None when `old` is not an
    ancestor: main was rewritten)."""

    old: str
    new: str
    author: str
    subject: str
    commits: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self, main: str) -> str:
        how = (
            f"{self.commits} commit(s)"
            if self.commits is not None
            else "rewritten (old tip not in its history)"
        )
        return (
            f"{main} moved outside fac from {self.old[:10]} to {self.new[:10]} ({how}; tip by "
            f"{self.author}: {self.subject!r})"
        )


def moved_outside(fac: Factory) -> OutsideMove | None:
    """How main moved since fac last wrote it, or None when it did not. With nothing recorded yet (a
    new factory, or one from before this record) main as it is now is taken as fac's starting point."""
    now = repo.rev_parse(fac.root, f"refs/heads/{fac.main}")
    if now is None:
        return None
    last = fac.store.last_main()
    if last is None:
        fac.store.record_main(now, None, "start")
        return None
    if now == last:
        return None
    author, _, subject = repo.git(
        fac.root, "log", "-1", "--format=%an <%ae>%x00%s", now, trusted=True
    ).partition("\0")
    commits = None
    if repo.is_ancestor(fac.root, last, now):
        commits = int(repo.git(fac.root, "rev-list", "--count", f"{last}..{now}", trusted=True) or 0)
    return OutsideMove(old=last, new=now, author=author, subject=subject, commits=commits)


def move_main(fac: Factory, old: str, new: str, by: str = "merge-queue") -> bool:
    """Compare-and-swap main from `old` to `new`, carrying the human's checkout along when it is on main.

    A checkout of main whose local edits do not touch what changed is fast-forwarded (edits kept);
    one whose edits would be overwritten is detached at `old` first, so nothing of the human's is
    touched and `fac status` says main moved ahead. False when main no longer points at `old`.
    The sha written is recorded (`by`: who wrote it), so the queue can tell fac's moves from others'.
    """
    root = fac.root
    on_main = repo.current_branch(root) == fac.main
    can_ff = False
    if on_main:
        can_ff = repo.read_tree(root, old, new, dry_run=True)
        if not can_ff:
            repo.git(root, "update-ref", "--no-deref", "HEAD", old)
    if not repo.update_ref_cas(root, f"refs/heads/{fac.main}", new, old):
        if on_main and not can_ff:
            repo.git(root, "symbolic-ref", "HEAD", f"refs/heads/{fac.main}")
        return False
    fac.store.record_main(new, old, by)
    if on_main and can_ff and not repo.read_tree(root, old, new):
        # The human edited in between: leave their files, detach at old.
        repo.git(root, "update-ref", "--no-deref", "HEAD", old)
        can_ff = False
    if on_main and not can_ff:
        fac.store.event(
            "checkout-detached", None, old=old, new=new, reason="local edits overlap files main changed"
        )
    publish(fac, new)
    return True


def publish(fac: Factory, sha: str) -> None:
    """Give each agent's own repository main at `sha` (moved by fac, or adopted green), so `git merge
    main` in its pane merges the main the queue builds on."""
    worktrees.publish_main([Path(w.worktree) for w in fac.store.workers()], fac.main, sha)
