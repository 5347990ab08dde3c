"""`fac doctor`: the whole set-up checked, each finding with what to fix.

The machine (git, tmux, bubblewrap, a container engine), then the factory: its configuration, its
main branch (and the remote's, with `[factory] remote`), the executor, the store, the gate checks on
main, the session and fac's own two processes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from supervisor import health, repo, sandbox, tmux
from supervisor.errors import FacError
from supervisor.factory import Factory, find_root

Level = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Finding:
    name: str
    level: Level
    detail: str
    fix: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def healthy(findings: list[Finding]) -> bool:
    """All is well when nothing failed (a warning is worth reading, not a failure)."""
    return all(f.level != "fail" for f in findings)


def _version(v: tuple[int, int]) -> str:
    return ".".join(map(str, v))


def _tool(name: str, version: Callable[[], tuple[int, int]], minimum: tuple[int, int]) -> Finding:
    """A required program and its version: ok, too old, or missing (its own error says how)."""
    try:
        v = version()
    except FacError as e:
        return Finding(name, "fail", e.message, e.hint or "")
    if v >= minimum:
        return Finding(name, "ok", f"{name} {_version(v)}")
    return Finding(name, "fail", f"{name} {_version(v)}", f"install {name} >= {_version(minimum)}")


def machine() -> list[Finding]:
    out = [
        _tool("git", repo.git_version, repo.MIN_GIT),
        _tool("tmux", tmux.tmux_version, tmux.MIN_TMUX),
    ]
    engine = sandbox.container_engine()
    bwrap = sandbox.bwrap_version()
    if bwrap:
        out.append(Finding("bubblewrap", "ok", bwrap))
    else:
        out.append(
            Finding(
                "bubblewrap",
                "warn" if engine else "fail",
                "bubblewrap is missing or cannot run here"
                + (
                    f" ({engine} sandboxes the checks)"
                    if engine
                    else ": checks and agents' commands run unsandboxed"
                ),
                "apt-get install -y bubblewrap",
            )
        )
    if engine:
        out.append(
            Finding("container engine", "ok", f"{engine} answers (checks run in the project container)")
        )
    else:
        out.append(
            Finding(
                "container engine",
                "ok" if bwrap else "warn",
                "none answers" + (": checks run in bubblewrap" if bwrap else ""),
                "" if bwrap else "install podman or docker, or bubblewrap",
            )
        )
    return out


def factory(fac: Factory) -> list[Finding]:
    out: list[Finding] = []
    try:
        cfg = fac.config
    except FacError as e:
        return [Finding("factory.toml", "fail", e.message, e.hint or "")]
    out.append(Finding("factory.toml", "ok", f"factory {cfg.name} at {fac.root}"))
    main_sha = repo.rev_parse(fac.root, f"refs/heads/{cfg.main}")
    if main_sha is None:
        out.append(
            Finding(
                "main",
                "fail",
                f"branch {cfg.main} does not exist",
                "set [factory] main in factory.toml to the branch the queue guards",
            )
        )
    else:
        out.append(Finding("main", "ok", f"{cfg.main} at {main_sha[:10]}"))
    if cfg.remote is not None:
        out.append(_remote(fac, main_sha))
    if cfg.executor.kind != "local":
        out.append(_executor(fac))
    out.append(_store(fac))
    if main_sha is not None:
        out.append(_gate_checks(fac))
    out.extend(_session(fac))
    return out


def _remote(fac: Factory, local: str | None) -> Finding:
    """The remote's main, fetched (the local main is not moved: the queue does that)."""
    where = f"{fac.config.remote}/{fac.main}"
    try:
        theirs = repo.fetch_branch(fac.root, fac.config.remote or "", fac.main)
    except FacError as e:
        return Finding("remote", "fail", e.message, e.hint or "check [factory] remote and git's access to it")
    if theirs is None:
        return Finding(
            "remote", "fail", f"{where} does not exist", f"git push {fac.config.remote} {fac.main}"
        )
    if local is None or theirs == local or repo.is_ancestor(fac.root, local, theirs):
        state = "the local main follows it" if theirs != local else "the local main is the same"
        return Finding("remote", "ok", f"{where} at {theirs[:10]} ({state})")
    return Finding(
        "remote",
        "fail",
        f"{where} at {theirs[:10]}, the local {fac.main} at {local[:10]} has commits it lacks",
        f"push them (git push {fac.config.remote} {fac.main}) or reset the local {fac.main} to {where}",
    )


def _executor(fac: Factory) -> Finding:
    """The Dask scheduler answers and has workers."""
    from supervisor import executors

    ex = executors.for_factory(fac)
    assert isinstance(ex, executors.Dask)
    try:
        workers = ex.workers()
    except FacError as e:
        return Finding("executor", "fail", e.message, e.hint or "")
    finally:
        ex.close()
    if not workers:
        return Finding(
            "executor",
            "fail",
            f"the Dask scheduler at {ex.scheduler} has no worker: candidates would wait",
            f"start one on each executor host: dask worker {ex.scheduler}",
        )
    return Finding(
        "executor", "ok", f"dask at {ex.scheduler}: {len(workers)} worker(s): {', '.join(workers)}"
    )


def _store(fac: Factory) -> Finding:
    path = fac.fac_dir / "state.db"
    try:
        verdict = fac.store.integrity()
    except FacError as e:
        return Finding("store", "fail", e.message, e.hint or "")
    if verdict != "ok":
        return Finding("store", "fail", f"{path}: {verdict}", f"move it aside (mv {path} {path}.broken)")
    return Finding("store", "ok", f"{path} (SQLite, sound)")


def _gate_checks(fac: Factory) -> Finding:
    from supervisor import checks

    try:
        suite = checks.suite_from_rev(fac.root, f"refs/heads/{fac.main}", fac.fac_dir / "suites")
    except FacError as e:
        return Finding("gate checks", "fail", e.message, e.hint or "")
    gate = suite.for_stage("gate")
    if gate:
        return Finding("gate checks", "ok", f"{len(gate)} on {fac.main}: {', '.join(c.name for c in gate)}")
    if fac.config.queue.allow_no_checks:
        return Finding(
            "gate checks",
            "warn",
            f"none on {fac.main}: the queue merges untested ([queue] allow_no_checks = true)",
            NO_CHECKS_FIX,
        )
    return Finding(
        "gate checks", "fail", f"none on {fac.main}: the queue holds every submission", NO_CHECKS_FIX
    )


NO_CHECKS_FIX = (
    'add one to factory.toml and commit it on main, e.g. [checks.tests] run = "python -m pytest -q" '
    'cwd = "system-under-construction"'
)


def _session(fac: Factory) -> list[Finding]:
    try:
        running = fac.session_running()
    except FacError as e:
        return [Finding("session", "fail", e.message, e.hint or "")]
    if not running:
        return [Finding("session", "fail", f"tmux session {fac.session} is not running", "fac up")]
    out = [Finding("session", "ok", f"tmux session {fac.session}")]
    for p in health.processes(fac):
        what = health.WHAT[p.name]
        if p.running:
            out.append(Finding(p.name, "ok", f"{what}: {p.describe()}"))
        else:
            out.append(
                Finding(
                    p.name,
                    "fail",
                    f"{what}: {p.describe()}",
                    f"fac up (starts it again); its window: fac attach {p.name}",
                )
            )
    return out


def examine(start: Path | None = None) -> tuple[Path | None, list[Finding]]:
    """Every finding for this machine and the factory here (if any)."""
    findings = machine()
    try:
        root = find_root(start)
    except FacError as e:
        return None, [*findings, Finding("factory", "fail", e.message, e.hint or "")]
    return root, [*findings, *factory(Factory(root))]
