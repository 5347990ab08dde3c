"""Where checks (and the anthropic agent's `run` tool) execute: a container, bubblewrap, or plainly.

- a container engine (docker or podman) that answers, given the project container's image
  (`supervisor.env` builds it from `project-container/` on main): the tree under test mounted at
  the same path, no network, a name of its own so that a timeout stops the container too;
- else bubblewrap (`bwrap`) when it works here: the root file system read-only (the system's
  environment in `.fac/envs/` included), the tree under test and a private TMPDIR writable, no network;
- else the plain host, and every report says so.

`FAC_SANDBOX=none|bwrap|container` forces a choice (an unavailable one is an error).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from supervisor.errors import FacError

KINDS = ("container", "bwrap", "none")


MountKind = Literal["seal", "hide", "ro", "rw"]
_PRECEDENCE: dict[MountKind, int] = {"seal": 0, "hide": 1, "ro": 2, "rw": 3}


@dataclass(frozen=True)
class Mount:
    path: str
    # hide: an empty writable tmpfs; seal: an empty read-only one (nothing can be planted where the
    # real thing was); ro: the real path read-only; rw: the real path writable
    kind: MountKind


def mounts(
    hide: list[Path], reveal: list[Path], writable: list[Path], seal: list[Path] | None = None
) -> list[Mount]:
    """The mounts of a bubblewrap sandbox over a read-only `/`, in the order to apply them: shallow
    paths first, so the deepest path decides (a worktree inside a hidden `.fac` stays writable, a
    hidden `.git` inside a revealed root stays hidden). On one path, writable beats read-only beats
    hidden. A hidden path that is not a directory, or a revealed one that does not exist, is left out."""
    best: dict[str, MountKind] = {}
    for kind, paths in (("seal", seal or []), ("hide", hide), ("ro", reveal), ("rw", writable)):
        for raw in paths:
            path = Path(raw).resolve()
            if (kind in ("hide", "seal") and not path.is_dir()) or (kind == "ro" and not path.exists()):
                continue
            key = str(path)
            k: MountKind = kind  # type: ignore[assignment]
            if key not in best or _PRECEDENCE[k] > _PRECEDENCE[best[key]]:
                best[key] = k
    return [
        Mount(p, k) for p, k in sorted(best.items(), key=lambda item: (len(Path(item[0]).parts), item[0]))
    ]


def bwrap_args(plan: list[Mount]) -> list[str]:
    """bubblewrap's options for a mount plan (from `mounts`); a sealed tmpfs turns read-only last,
    after the mount points of what comes back inside it exist (the remount is not recursive)."""
    flag = {"seal": "--tmpfs", "hide": "--tmpfs", "ro": "--ro-bind", "rw": "--bind"}
    out: list[str] = []
    for m in plan:
        out += [flag[m.kind], m.path] if m.kind in ("hide", "seal") else [flag[m.kind], m.path, m.path]
    for m in plan:
        if m.kind == "seal":
            out += ["--remount-ro", m.path]
    return out


@dataclass(frozen=True)
class Sandbox:
    kind: str  # container | bwrap | none
    detail: str  # e.g. "docker image fac-dev-1a2b3c", "bubblewrap 0.8.0", "host (no sandbox found)"
    engine: str | None = None
    image: str | None = None
    env_bin: str | None = None  # the system's environment's bin directory: first on a check's PATH

    def wrap(
        self,
        argv: list[str],
        cwd: Path,
        writable: list[Path],
        hide: list[Path] | None = None,
        reveal: list[Path] | None = None,
        name: str | None = None,
        *,
        seal: list[Path] | None = None,
        network: bool = False,
        private_tmp: bool = False,
    ) -> list[str]:
        """The command line that runs `argv` in `cwd` inside this sandbox; `hide` become empty dirs,
        and `reveal` (read-only) come back from under them (an interpreter installed in a hidden home);
        `seal` become empty read-only dirs; the deepest path decides (see `mounts`). `name` names
        the container, so that `stop(name)` can end it (a killed client does not); `network` keeps
        the network (bubblewrap only), and `private_tmp` gives the command a /tmp of its own."""
        if self.kind == "bwrap":
            ro = list(reveal or [])
            if self.env_bin:
                # The shared environment stays read-only even inside a writable tree (a check at the
                # factory root): no check can plant code in it for every later candidate.
                ro.append(Path(self.env_bin).parent)
            hidden = [*(hide or []), *([Path("/tmp")] if private_tmp else [])]
            plan = mounts(hide=hidden, reveal=ro, writable=writable, seal=seal)
            # No tmpfs over /tmp unless asked: the tree under test may live there (a deeper bind
            # brings it back when it is asked). Callers pass a private TMPDIR.
            # A new pid namespace: the sandboxed command cannot read other processes' environments.
            return [
                "bwrap",
                "--ro-bind",
                "/",
                "/",
                "--dev",
                "/dev",
                "--unshare-pid",
                "--proc",
                "/proc",
                *bwrap_args(plan),
                *([] if network else ["--unshare-net"]),
                "--die-with-parent",
                "--chdir",
                str(cwd),
                "--",
                *argv,
            ]
        if self.kind == "container":
            assert self.engine and self.image
            volumes: list[str] = []
            for p in dict.fromkeys(str(Path(w).resolve()) for w in writable):
                volumes += ["-v", f"{p}:{p}"]
            named = ["--name", name] if name else []
            return [
                self.engine,
                "run",
                "--rm",
                *named,
                "--network",
                "none",
                *volumes,
                "-w",
                str(cwd),
                self.image,
                *argv,
            ]
        return argv

    def with_env(self, env_bin: Path | None) -> Sandbox:
        """This sandbox with the system's environment's `bin` first on its checks' PATH."""
        return replace(self, env_bin=str(env_bin) if env_bin else None)

    def stop(self, name: str) -> None:
        """Stop and remove the container `name` (after a timeout: killing the client leaves it running)."""
        if self.kind != "container" or not self.engine:
            return
        for args in (["kill", name], ["rm", "-f", name]):
            subprocess.run([self.engine, *args], capture_output=True, timeout=60, check=False)


NONE = Sandbox("none", "host (no container engine or bubblewrap found)")


@functools.cache
def _bwrap_probe() -> tuple[str | None, str]:
    """(bubblewrap's path, "") when it can make a sandbox here, else (None, why not)."""
    exe = shutil.which("bwrap")
    if not exe:
        return None, "bubblewrap is not installed (apt-get install -y bubblewrap)"
    probe = subprocess.run(
        [
            exe,
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--unshare-pid",
            "--proc",
            "/proc",
            "--unshare-net",
            "--die-with-parent",
            "true",
        ],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        err = (probe.stderr.strip().splitlines() or [f"exit {probe.returncode}"])[-1]
        return None, f"bubblewrap cannot run here ({err})"
    return exe, ""


@functools.cache
def _bwrap_works() -> str | None:
    """bubblewrap's version (for reports) when it can make a sandbox here, else None."""
    exe = _bwrap_probe()[0]
    if exe is None:
        return None
    ver = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    return ver or "bubblewrap"


@functools.cache
def engine() -> str | None:
    """The container engine that answers here (podman first, then docker), or None."""
    for name in ("podman", "docker"):
        exe = shutil.which(name)
        if not exe:
            continue
        try:
            if subprocess.run([exe, "info"], capture_output=True, timeout=10).returncode == 0:
                return name
        except subprocess.TimeoutExpired:
            continue
    return None


def bwrap_version() -> str | None:
    """bubblewrap's version when it runs here (a sandbox can be made), else None."""
    return _bwrap_works()


def container_engine() -> str | None:
    """The container engine (podman, docker) that answers here, else None."""
    return engine()


def forced() -> str:
    """FAC_SANDBOX's choice ("" when unset); an unknown value is an error."""
    value = os.environ.get("FAC_SANDBOX", "").strip()
    if value and value not in KINDS:
        raise FacError(f"FAC_SANDBOX={value!r} is not a sandbox kind", hint=f"use one of: {', '.join(KINDS)}")
    return value


def detect(root: Path, image: str | None = None) -> Sandbox:
    """The sandbox checks run in: the container of `image` (the project container, built by
    `supervisor.env`) when an engine answers, else bubblewrap, else the host."""
    choice = forced()
    if choice == "none":
        return Sandbox("none", "host (FAC_SANDBOX=none)")
    if choice in ("", "container"):
        eng = engine() if image else None
        if eng and image:
            return Sandbox("container", f"{eng} image {image}", eng, image)
        if choice == "container":
            raise FacError(
                "FAC_SANDBOX=container but no container engine answers or the image did not build",
                hint="start docker or podman (`fac env build` builds the image), or unset FAC_SANDBOX",
            )
    ver = _bwrap_works()
    if ver:
        return Sandbox("bwrap", ver)
    if choice == "bwrap":
        raise FacError(
            "FAC_SANDBOX=bwrap but bubblewrap is not installed or cannot run here",
            hint="apt-get install -y bubblewrap, or unset FAC_SANDBOX",
        )
    return NONE


def agents_unconfined() -> str:
    """Why agents' panes cannot run in bubblewrap here ("" when they can): FAC_SANDBOX=none asks for
    no sandbox at all; otherwise bubblewrap must be installed and able to make namespaces."""
    if forced() == "none":
        return "FAC_SANDBOX=none"
    return _bwrap_probe()[1]
