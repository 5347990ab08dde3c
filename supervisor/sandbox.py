"""Where checks (and the anthropic agent's `run` tool) execute: a container, bubblewrap, or plainly.

- a container engine (docker or podman) that answers: the image built from
  `project-container/Containerfile`, the tree under test mounted at the same path, no network;
- else bubblewrap (`bwrap`) when it works here: the root file system read-only, the tree under
  test and a private /tmp writable, no network;
- else the plain host, and every report says so.

`FAC_SANDBOX=none|bwrap|container` forces a choice (an unavailable one is an error).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import FacError

KINDS = ("container", "bwrap", "none")


@dataclass(frozen=True)
class Sandbox:
    kind: str  # container | bwrap | none
    detail: str  # e.g. "docker image fac-dev-1a2b3c", "bubblewrap 0.8.0", "host (no sandbox found)"
    engine: str | None = None
    image: str | None = None

    def wrap(
        self,
        argv: list[str],
        cwd: Path,
        writable: list[Path],
        hide: list[Path] | None = None,
        reveal: list[Path] | None = None,
    ) -> list[str]:
        """The command line that runs `argv` in `cwd` inside this sandbox; `hide` become empty dirs,
        and `reveal` (read-only) come back from under them (an interpreter installed in a hidden home)."""
        if self.kind == "bwrap":
            binds: list[str] = []
            for h in dict.fromkeys(str(Path(x).resolve()) for x in hide or []):
                if Path(h).is_dir():
                    binds += ["--tmpfs", h]
            revealed = [
                r for r in dict.fromkeys(str(Path(x).resolve()) for x in reveal or []) if Path(r).exists()
            ]
            for r in revealed:
                binds += ["--ro-bind", r, r]
            # A hidden path inside a revealed one stays hidden (bwrap applies mounts in order).
            for h in dict.fromkeys(str(Path(x).resolve()) for x in hide or []):
                if Path(h).is_dir() and any(Path(h).is_relative_to(r) and h != r for r in revealed):
                    binds += ["--tmpfs", h]
            for p in dict.fromkeys(str(Path(w).resolve()) for w in writable):
                binds += ["--bind", p, p]
            # No tmpfs over /tmp: the tree under test may live there. Callers pass a private TMPDIR.
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
                *binds,
                "--unshare-net",
                "--die-with-parent",
                "--chdir",
                str(cwd),
                "--",
                *argv,
            ]
        if self.kind == "container":
            assert self.engine and self.image
            mounts: list[str] = []
            for p in dict.fromkeys(str(Path(w).resolve()) for w in writable):
                mounts += ["-v", f"{p}:{p}"]
            return [
                self.engine,
                "run",
                "--rm",
                "--network",
                "none",
                *mounts,
                "-w",
                str(cwd),
                self.image,
                *argv,
            ]
        return argv


NONE = Sandbox("none", "host (no container engine or bubblewrap found)")


@functools.cache
def _bwrap_works() -> str | None:
    exe = shutil.which("bwrap")
    if not exe:
        return None
    probe = subprocess.run(
        [
            exe,
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
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
        return None
    ver = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    return ver or "bubblewrap"


@functools.cache
def _engine() -> str | None:
    for name in ("podman", "docker"):
        exe = shutil.which(name)
        try:
            if exe and subprocess.run([exe, "info"], capture_output=True, timeout=10).returncode == 0:
                return name
        except subprocess.TimeoutExpired:  # an engine that does not answer is not there
            continue
    return None


def bwrap_version() -> str | None:
    """bubblewrap's version when it runs here (a sandbox can be made), else None."""
    return _bwrap_works()


def container_engine() -> str | None:
    """The container engine (podman, docker) that answers here, else None."""
    return _engine()


def _image(engine: str, root: Path) -> str | None:
    """Build (once per Containerfile content) the project container; None if it cannot be built here."""
    cf = root / "project-container" / "Containerfile"
    if not cf.is_file():
        return None
    tag = "fac-dev-" + hashlib.sha256(cf.read_bytes()).hexdigest()[:12]
    have = subprocess.run([engine, "image", "inspect", tag], capture_output=True)
    if have.returncode == 0:
        return tag
    built = subprocess.run(
        [engine, "build", "-q", "-t", tag, "-f", str(cf), str(root)], capture_output=True, timeout=1800
    )
    return tag if built.returncode == 0 else None


def detect(root: Path) -> Sandbox:
    forced = os.environ.get("FAC_SANDBOX", "").strip()
    if forced and forced not in KINDS:
        raise FacError(
            f"FAC_SANDBOX={forced!r} is not a sandbox kind", hint=f"use one of: {', '.join(KINDS)}"
        )
    if forced == "none":
        return Sandbox("none", "host (FAC_SANDBOX=none)")
    if forced in ("", "container"):
        engine = _engine()
        image = _image(engine, root) if engine else None
        if engine and image:
            return Sandbox("container", f"{engine} image {image}", engine, image)
        if forced == "container":
            raise FacError(
                "FAC_SANDBOX=container but no container engine answers or the image does not build",
                hint="start docker or podman, or unset FAC_SANDBOX",
            )
    ver = _bwrap_works()
    if ver:
        return Sandbox("bwrap", ver)
    if forced == "bwrap":
        raise FacError(
            "FAC_SANDBOX=bwrap but bubblewrap is not installed or cannot run here",
            hint="apt-get install -y bubblewrap, or unset FAC_SANDBOX",
        )
    return NONE
