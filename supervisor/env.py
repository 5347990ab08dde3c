"""The system's own development environment: `project-container/` on main, built once per content hash.

The hash is the id of main's `project-container/` tree. fac builds it outside the sandbox (the
network is allowed for the build only) and every check (inner and gate) and every agent pane uses it:

- with a container engine that answers: the image of `project-container/Containerfile`, tagged
  `fac-env-<hash>`; checks run in it offline with the candidate's tree mounted;
- without one: a virtualenv in `.fac/envs/<hash>` from `project-container/requirements.txt`, then
  `project-container/setup` if it is executable (run with the env's `bin` first on PATH and
  `FAC_ENV` set). fac seeds it with its own pytest (which the gate's per-test reports and test-count
  guard drive), so a system that needs nothing else builds without a download.

`.fac/envs/current` points at the env in use: the old one serves until a new one is ready, and
older ones are pruned. A failed build is remembered (`<hash>.failed`, the log in `<hash>.log`) and
not retried on its own: it is for a human (`fac env build` retries), never a red verdict for an agent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from supervisor import envbuild, identity, locks, repo, sandbox
from supervisor.errors import FacError
from supervisor.factory import Factory
from supervisor.sandbox import Sandbox

SOURCE = "project-container"
META = "fac-env.json"
CURRENT = "current"
KEEP = 2  # the env in use and the newest one before it (a run that started on it may still need it)
LINE_REASON = "environment build failed"  # how a line stopped by the environment reads

EnvKind = Literal["venv", "image", "host"]
Action = Literal["host", "ready", "build", "failed"]


@dataclass(frozen=True)
class Env:
    """One environment: a venv directory, a container image, or fac's own interpreter (host)."""

    kind: EnvKind
    hash: str | None = None
    path: Path | None = None
    image: str | None = None
    built_by: str | None = None
    built_at: float | None = None
    duration: float | None = None
    wanted: str | None = None  # the hash main asks for, when another env serves meanwhile
    note: str = ""

    @property
    def bin(self) -> Path | None:
        return self.path / "bin" if self.kind == "venv" and self.path else None

    @property
    def stale(self) -> bool:
        return self.wanted is not None and self.wanted != self.hash

    def describe(self) -> str:
        if self.kind == "host":
            return f"host: fac's own interpreter ({self.note or 'no environment'})"
        what = f"venv {self.path}" if self.kind == "venv" else f"image {self.image}"
        extra = f"; main wants {self.wanted}, not built yet" if self.stale else ""
        return f"{what} ({SOURCE}/ {self.hash}{extra})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hash": self.hash,
            "path": str(self.path) if self.path else None,
            "image": self.image,
            "bin": str(self.bin) if self.bin else None,
            "built_by": self.built_by,
            "built_at": self.built_at,
            "duration": self.duration,
            "wanted": self.wanted,
            "stale": self.stale,
            "note": self.note,
        }


class EnvBuildFailed(FacError):
    """The environment of `project-container/` at `hash` did not build; `log` says why."""

    def __init__(self, env_hash: str, log: Path, detail: str) -> None:
        super().__init__(
            f"{LINE_REASON}: {SOURCE}/ {env_hash}: {detail}",
            hint=f"read {log}, fix {SOURCE}/ on main, then `fac env build` (and `fac line resume`)",
        )
        self.hash = env_hash
        self.log = log
        self.detail = detail


# --- decisions: plain data in, plain data out ---


def decide(wanted: str | None, ready: set[str], failed: set[str], *, retry: bool = False) -> Action:
    """What `ensure` does for main's hash: nothing to build, use it, build it, or report its failure."""
    if wanted is None:
        return "host"
    if wanted in ready:
        return "ready"
    if wanted in failed and not retry:
        return "failed"
    return "build"


def serving(wanted: str | None, ready: set[str], current: str | None) -> str | None:
    """Which env serves now: main's when it is ready, else the current one (the old one serves)."""
    if wanted is not None and wanted in ready:
        return wanted
    return current if current in ready else None


def to_prune(built: dict[str, float], keep: set[str], n: int = KEEP) -> list[str]:
    """The ready envs to delete: all but `keep` (in use) and the newest ones up to `n` in all."""
    kept = set(keep)
    for h in sorted(built, key=lambda h: built[h], reverse=True):
        if len(kept) >= n:
            break
        kept.add(h)
    return sorted(h for h in built if h not in kept)


def kind_for(engine: str | None, forced: str, has_containerfile: bool) -> EnvKind:
    """The image when an engine answers and a Containerfile exists (unless FAC_SANDBOX says otherwise)."""
    if engine and has_containerfile and forced in ("", "container"):
        return "image"
    return "venv"


def wants_pip(requirements: str) -> bool:
    """Whether requirements.txt asks for anything (an all-comment file needs no pip run)."""
    for line in requirements.splitlines():
        text = line.split(" #", 1)[0].strip()
        if text and not text.startswith("#"):
            return True
    return False


def image_tag(env_hash: str) -> str:
    return f"fac-env-{env_hash}"


# --- the environments on disk ---


def envs_dir(fac: Factory) -> Path:
    return fac.fac_dir / "envs"


def wanted_hash(fac: Factory) -> str | None:
    """The content hash of `project-container/` on main, or None when main has none."""
    tree = repo.tree_id(fac.root, f"refs/heads/{fac.main}", SOURCE)
    return tree[:12] if tree else None


def _read_meta(d: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((d / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _scan(base: Path) -> tuple[dict[str, float], set[str]]:
    """(ready hash -> built_at, failed hashes) under `.fac/envs`."""
    ready: dict[str, float] = {}
    failed: set[str] = set()
    if not base.is_dir():
        return ready, failed
    for p in base.iterdir():
        if p.name.endswith(".failed"):
            failed.add(p.name[: -len(".failed")])
        elif p.is_dir() and not p.is_symlink():
            meta = _read_meta(p)
            if meta is not None:
                ready[p.name] = float(meta.get("built_at") or 0.0)
    return ready, failed


def _current_hash(base: Path) -> str | None:
    link = base / CURRENT
    try:
        return os.readlink(link)
    except OSError:
        return None


def _load(base: Path, env_hash: str, wanted: str | None) -> Env:
    d = base / env_hash
    meta = _read_meta(d) or {}
    kind: EnvKind = "image" if meta.get("kind") == "image" else "venv"
    return Env(
        kind=kind,
        hash=env_hash,
        path=d,
        image=meta.get("image"),
        built_by=meta.get("built_by"),
        built_at=meta.get("built_at"),
        duration=meta.get("duration"),
        wanted=wanted if wanted != env_hash else None,
    )


def failure(fac: Factory, env_hash: str | None = None) -> EnvBuildFailed | None:
    """The remembered failure of main's environment (or of `env_hash`), or None."""
    env_hash = env_hash or wanted_hash(fac)
    if env_hash is None:
        return None
    marker = envs_dir(fac) / f"{env_hash}.failed"
    try:
        detail = marker.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return EnvBuildFailed(env_hash, envs_dir(fac) / f"{env_hash}.log", detail or "failed")


def current(fac: Factory) -> Env:
    """The env in use now, without building anything: main's if built, else the one before it."""
    base = envs_dir(fac)
    wanted = wanted_hash(fac)
    if wanted is None:
        return Env("host", note=f"no {SOURCE}/ on {fac.main}")
    ready, _failed = _scan(base)
    h = serving(wanted, set(ready), _current_hash(base))
    if h is None:
        return Env("host", wanted=wanted, note=f"{SOURCE}/ {wanted} is not built yet: `fac env build`")
    return _load(base, h, wanted)


def ensure(fac: Factory, *, say: Callable[[str], None] | None = None, retry: bool = False) -> Env:
    """Main's environment, built now if it is not yet (one builder at a time); EnvBuildFailed if it
    does not build. A failure is remembered: only `retry` (`fac env build`) builds that hash again."""
    base = envs_dir(fac)
    wanted = wanted_hash(fac)
    if wanted is None:
        return Env("host", note=f"no {SOURCE}/ on {fac.main}")
    meta = None if retry else _read_meta(base / wanted)
    if meta is not None and _current_hash(base) == wanted:
        if meta.get("kind") == "venv" and not meta.get("bytecode"):
            _add_bytecode(base / wanted, meta)
        return _load(base, wanted, wanted)  # the hot path: one git call and one small read
    with locks.held(base / "build.lock"):
        ready, failed = _scan(base)
        action = decide(wanted, set(ready), failed, retry=retry)
        if action == "failed":
            err = failure(fac, wanted)
            assert err is not None
            raise err
        if action == "build":
            _build(fac, wanted, say or (lambda _m: None))
        _switch(base, wanted)
        ready, failed = _scan(base)
        for h in to_prune(ready, {wanted}):
            _remove(base, h)
        for h in failed - {wanted}:  # failures of hashes main no longer asks for
            (base / f"{h}.failed").unlink(missing_ok=True)
            (base / f"{h}.log").unlink(missing_ok=True)
    return _load(base, wanted, wanted)


def sandbox_for(fac: Factory, environment: Env) -> Sandbox:
    """The sandbox a check runs in with `environment`: its container, or bubblewrap or the host with
    the env's `bin` first on PATH (bubblewrap mounts it read-only with the rest of the root)."""
    if environment.kind == "image":
        return sandbox.detect(fac.root, image=environment.image)
    return sandbox.detect(fac.root).with_env(environment.bin)


def pane_path(fac: Factory) -> Path:
    """What agent panes put first on PATH: the current env's `bin`, through the `current` link, so a
    pane follows a rebuilt env without a restart."""
    return envs_dir(fac) / CURRENT / "bin"


def _switch(base: Path, env_hash: str) -> None:
    """Point `current` at `env_hash` atomically (a rename over the old link)."""
    if _current_hash(base) == env_hash:
        return
    tmp = base / f".{CURRENT}.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(env_hash, tmp)
    os.replace(tmp, base / CURRENT)


def _remove(base: Path, env_hash: str) -> None:
    meta = _read_meta(base / env_hash) or {}
    if meta.get("kind") == "image" and meta.get("engine") and meta.get("image"):
        subprocess.run([meta["engine"], "rmi", meta["image"]], capture_output=True, check=False, timeout=120)
    shutil.rmtree(base / env_hash, ignore_errors=True)
    (base / f"{env_hash}.log").unlink(missing_ok=True)


# --- building ---


def _build(fac: Factory, env_hash: str, say: Callable[[str], None]) -> None:
    base = envs_dir(fac)
    d = base / env_hash
    log_path = base / f"{env_hash}.log"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (base / f"{env_hash}.failed").unlink(missing_ok=True)
    start = time.monotonic()
    engine = sandbox.engine()
    forced = sandbox.forced()
    with open(log_path, "w", encoding="utf-8") as log:

        def step(msg: str) -> None:
            say(f"env {env_hash}: {msg}")
            log.write(f"== {msg}\n")
            log.flush()

        try:
            src = d / SOURCE
            _materialize(fac, env_hash, src)
            kind = kind_for(engine, forced, (src / "Containerfile").is_file())
            extra: dict[str, Any] = {}
            if kind == "image":
                assert engine is not None
                envbuild.build_image(engine, src, image_tag(env_hash), step, log)
                extra = {"engine": engine, "image": image_tag(env_hash)}
            else:
                req = src / "requirements.txt"
                pip = req.is_file() and wants_pip(req.read_text(encoding="utf-8"))
                envbuild.build_venv(d, src, step, log, pip=pip)
        except (envbuild.StepFailed, OSError, subprocess.SubprocessError) as e:
            detail = str(e) if isinstance(e, envbuild.StepFailed) else f"{type(e).__name__}: {e}"
            log.write(f"FAILED: {detail}\n")
            log.flush()
            shutil.rmtree(d, ignore_errors=True)
            (base / f"{env_hash}.failed").write_text(detail + "\n", encoding="utf-8")
            say(f"env {env_hash}: FAILED: {detail} (log: {log_path})")
            raise EnvBuildFailed(env_hash, log_path, detail) from None
        took = round(time.monotonic() - start, 3)
        meta = {
            "kind": kind,
            "hash": env_hash,
            "built_at": time.time(),
            "built_by": _builder(),
            "duration": took,
            "python": sys.version.split()[0],
            "bytecode": kind == "venv",
            **extra,
        }
        (d / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")  # written last: ready
        step(f"ready in {took:.1f}s")


def _add_bytecode(d: Path, meta: dict[str, Any]) -> None:
    """An env built by a fac that did not compile its packages (see `envbuild.compile_site`): compile
    them now, once, and say so in its meta (compileall replaces each file atomically, so a check
    running meanwhile reads either no bytecode or a whole one)."""
    py = d / "bin" / "python"
    site = next(iter(sorted((d / "lib").glob("python*/site-packages"))), None)
    if site is None or not py.exists():
        return
    with open(d.parent / f"{d.name}.log", "a", encoding="utf-8") as log:
        envbuild.compile_site(py, site, log)
    tmp = d / f".{META}.{os.getpid()}"
    tmp.write_text(json.dumps({**meta, "bytecode": True}, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, d / META)


def _builder() -> str:
    who = identity.caller().worker or os.environ.get("USER") or "unknown"
    return f"{who} (pid {os.getpid()}, fac {_fac_version()})"


def _fac_version() -> str:
    from supervisor import __version__

    return __version__


def _materialize(fac: Factory, env_hash: str, dst: Path) -> None:
    """Main's `project-container/` as files (from git objects, never the human's working tree)."""
    main = f"refs/heads/{fac.main}"
    for mode, blob, path in repo.ls_tree(fac.root, main, SOURCE):
        out = dst / Path(path).relative_to(SOURCE)
        out.parent.mkdir(parents=True, exist_ok=True)
        if mode == "120000":
            os.symlink(repo.blob(fac.root, blob).decode(), out)
            continue
        out.write_bytes(repo.blob(fac.root, blob))
        out.chmod(0o755 if mode == "100755" else 0o644)
