"""The only writer of main: a compare-and-swap of the branch, carrying the human's checkout along.

The merge queue lands tested candidates through it and the delta commands commit for humans
through it; nothing else moves `main`.
"""

from __future__ import annotations

from supervisor import repo
from supervisor.factory import Factory


def move_main(fac: Factory, old: str, new: str) -> bool:
    """Compare-and-swap main from `old` to `new`, carrying the human's checkout along when it is on main.

    A checkout of main whose local edits do not touch what changed is fast-forwarded (edits kept);
    one whose edits would be overwritten is detached at `old` first, so nothing of the human's is
    touched and `fac status` says main moved ahead. False when main no longer points at `old`.
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
    if on_main and can_ff and not repo.read_tree(root, old, new):
        # The human edited in between: leave their files, detach at old.
        repo.git(root, "update-ref", "--no-deref", "HEAD", old)
        can_ff = False
    if on_main and not can_ff:
        fac.store.event(
            "checkout-detached", None, old=old, new=new, reason="local edits overlap files main changed"
        )
    return True
