"""The sandbox every agent's pane runs in: what it may write, what it may read, what it never sees.

An agent can write its own worktree (its own git repository), its own run directory, a private
`/tmp` and the directories its runtime says it needs (Claude Code's config). It sees the rest of
the system read-only, the factory root included (the human's checkout). Hidden from it: the store
and everything else under `.fac/` (other workers' trees and run directories, logs), the factory's
git directory (only its objects come back, read-only, for the agent repository's alternates), the
home directory (keys, tokens, cloud credentials) and the per-user runtime directory (agent
sockets, tmux's server). `[sandbox] agent_network = false` also cuts the network.

Where bubblewrap cannot run, panes run plainly and `unconfined()` says why, for `fac up`,
`fac status` and the dashboard to say so.
"""

from __future__ import annotations

import os
import site
import sys
from dataclasses import dataclass
from pathlib import Path

from supervisor import env as sysenv
from supervisor import repo, sandbox
from supervisor.factory import Factory
from supervisor.model import unconfined_runtime

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # fac's own source (an editable install)


@dataclass(frozen=True)
class Plan:
    """The paths of one agent's sandbox, before bubblewrap's mount order is worked out."""

    hide: tuple[Path, ...]  # empty and writable (scratch): the home directory
    seal: tuple[Path, ...]  # empty and read-only: nothing can be planted where the real thing was
    reveal: tuple[Path, ...]
    writable: tuple[Path, ...]


def plan(
    *,
    root: Path,
    git_dir: Path,
    worktree: Path,
    run_dir: Path,
    home: Path,
    envs: Path,
    programs: tuple[Path, ...] = (),
    writable: tuple[Path, ...] = (),
    readable: tuple[Path, ...] = (),
    runtime_dir: Path | None = None,
) -> Plan:
    """What one agent's sandbox hides, shows read-only and lets it write (pure: table-tested).

    `programs` are where fac and its Python live (they come back read-only if they sit in a hidden
    place); `writable` and `readable` are what the agent's runtime asks for."""
    seal = [root / ".fac", git_dir, *([runtime_dir] if runtime_dir else [])]
    reveal = [*programs, root, envs, git_dir / "objects", *readable]
    return Plan((home,), tuple(seal), tuple(reveal), (worktree, run_dir, *writable))


def unconfined(runtime: str | None = None) -> str:
    """Why agents (of `runtime`, when given) run without a sandbox here ("" when they run in one)."""
    return sandbox.agents_unconfined() or (unconfined_runtime(runtime) if runtime else "")


def status(runtimes: dict[str, str] | None = None) -> dict[str, object]:
    """What `fac status --json` and the dashboard show about agents' isolation; `runtimes` maps
    workers to their runtimes, for the workers whose runtime runs outside the sandbox."""
    reason = unconfined()
    out: dict[str, object] = {"isolated": not reason, "reason": reason, "warning": warning(reason)}
    if runtimes is not None and not reason:
        out["unconfined_workers"] = {
            name: why for name, rt in sorted(runtimes.items()) if (why := unconfined_runtime(rt))
        }
    return out


def warning(reason: str) -> str:
    """The one line every view prints when agents are not isolated ("" when they are)."""
    return f"agents are not isolated: {reason}" if reason else ""


def _programs() -> tuple[Path, ...]:
    paths = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent, PACKAGE_DIR]
    user_site = site.getusersitepackages()
    if user_site:
        paths.append(Path(user_site))
    return tuple(paths)


def wrap(
    fac: Factory,
    worker: str,
    argv: list[str],
    worktree: Path,
    *,
    writable: tuple[Path, ...] = (),
    readable: tuple[Path, ...] = (),
    runtime: str | None = None,
) -> tuple[list[str], dict[str, str]]:
    """The argv that runs `argv` in `worker`'s sandbox and the variables to add to its pane's
    environment; `argv` unchanged (and no variables) where agents are not isolated."""
    if unconfined(runtime):
        return argv, {}
    run_dir = fac.run_dir(worker)
    run_dir.mkdir(parents=True, exist_ok=True)
    writable = tuple(path for path in writable if path.exists())  # a runtime creates what it needs
    uid_run = Path(f"/run/user/{os.getuid()}")
    layout = plan(
        root=fac.root,
        git_dir=repo.common_dir(fac.root),
        worktree=worktree,
        run_dir=run_dir,
        home=Path.home(),
        envs=sysenv.envs_dir(fac),
        programs=_programs(),
        writable=writable,
        readable=readable,
        runtime_dir=uid_run if uid_run.is_dir() else None,
    )
    box = sandbox.Sandbox("bwrap", "bubblewrap")
    wrapped = box.wrap(
        argv,
        worktree,
        list(layout.writable),
        hide=list(layout.hide),
        seal=list(layout.seal),
        reveal=list(layout.reveal),
        network=fac.config.sandbox.agent_network,
        private_tmp=True,
    )
    # tmux's server and any TMPDIR of the supervisor's live under the hidden /tmp: the pane gets its own.
    return wrapped, {"TMPDIR": "/tmp"}
