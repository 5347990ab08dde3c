"""Building a system's environment: the subprocesses (venv, pip, setup, a container build) and the
seeding of a virtualenv with fac's own pytest. `env.py` decides what to build and when; this runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BUILD_TIMEOUT = 1800
SEED = ("pytest",)  # fac's own test runner, with what it requires, copied into every venv


class StepFailed(Exception):
    """A build step failed; the message says which and how."""


def run_step(argv: list[str], cwd: Path, env: dict[str, str] | None, log: Any, what: str) -> None:
    log.write(f"$ {' '.join(argv)}\n")
    log.flush()
    try:
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=BUILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{what} timed out after {BUILD_TIMEOUT}s") from None
    if proc.returncode != 0:
        raise StepFailed(f"{what} exited {proc.returncode}")


def build_venv(d: Path, src: Path, step: Callable[[str], None], log: Any, *, pip: bool) -> None:
    """A virtualenv at `d` seeded with fac's pytest; `pip`: install src/requirements.txt; then src/setup."""
    step(f"virtualenv {d}")
    run_step([sys.executable, "-m", "venv", "--without-pip", str(d)], src, None, log, "python -m venv")
    py = d / "bin" / "python"
    probe = [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    site = Path(subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip())
    seeded = _seed(site, d / "bin")
    step(f"seeded from fac: {', '.join(seeded)}")
    _write_pip(d)
    env = build_env(d)
    req = src / "requirements.txt"
    if pip and req.is_file():
        step("pip install -r requirements.txt")
        argv = [sys.executable, "-m", "pip", "--python", str(py), "install", "-r", str(req)]
        run_step(argv, src, env, log, "pip install -r requirements.txt")
    setup = src / "setup"
    if setup.is_file() and os.access(setup, os.X_OK):
        step("project-container/setup")
        run_step([str(setup)], src, env, log, "project-container/setup")
    step("bytecode")
    compile_site(py, site, log)


def compile_site(py: Path, site: Path, log: Any) -> None:
    """Compile what the env's packages lack of bytecode once, at build time (the seed brings fac's
    own, pip compiles what it installs: this is mostly a check that takes 0.05 s). Checks run with
    PYTHONDONTWRITEBYTECODE (nothing may write `__pycache__` into a candidate's tree) and see the env
    read-only, so without this every check's `import pytest` compiles pytest from source again: about
    0.15 s of CPU per pytest process, two or three per gate run. Best effort: a package file this
    Python cannot compile (an old backport) is logged, not a failed build."""
    # Next to the sources, where the env's python looks (a PYTHONPYCACHEPREFIX would hide them).
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    argv = [str(py), "-m", "compileall", "-q", str(site)]
    try:
        run_step(argv, site, env, log, "compileall")
    except StepFailed as e:
        log.write(f"bytecode: {e}; the rest runs from source\n")


def build_env(d: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{d / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["FAC_ENV"] = str(d)
    env["VIRTUAL_ENV"] = str(d)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    env["PIP_NO_INPUT"] = "1"
    env.pop("PYTHONHOME", None)
    return env


def _write_pip(d: Path) -> None:
    """`pip` in the env is fac's pip aimed at the env's python (a venv without pip builds in 0.1 s)."""
    script = d / "bin" / "pip"
    script.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" -m pip --python "{d / "bin" / "python"}" "$@"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)


def _closure(names: tuple[str, ...]) -> list[str]:
    """The distributions `names` need, as installed with fac (markers evaluated, extras left out)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: dict[str, None] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        key = dist.metadata["Name"].lower()
        if key in seen:
            continue
        seen[key] = None
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return list(seen)


def _seed(site: Path, bin_dir: Path) -> list[str]:
    """Copy fac's pytest (and what it requires) into the venv, with its bytecode and console scripts."""
    from importlib import metadata

    done = []
    for name in _closure(SEED):
        dist = metadata.distribution(name)
        for f in dist.files or []:
            rel = Path(str(f))
            if rel.parts and rel.parts[0] == "..":
                continue  # console scripts carry fac's interpreter; they are written below
            src = Path(str(dist.locate_file(f)))
            if not src.is_file():
                continue
            dst = site / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            # With their times: fac's bytecode (same interpreter) stays valid for the copied sources.
            shutil.copy2(src, dst)
        for ep in dist.entry_points:
            if ep.group == "console_scripts":
                script = bin_dir / ep.name
                script.write_text(
                    f"#!{bin_dir / 'python'}\nimport sys\nfrom {ep.module} import {ep.attr}\n"
                    f"sys.exit({ep.attr}())\n",
                    encoding="utf-8",
                )
                script.chmod(0o755)
        done.append(f"{dist.metadata['Name']} {dist.version}")
    return done


def build_image(engine: str, src: Path, tag: str, step: Callable[[str], None], log: Any) -> None:
    step(f"{engine} build -t {tag}")
    cf = src / "Containerfile"
    run_step([engine, "build", "-t", tag, "-f", str(cf), str(src)], src, None, log, f"{engine} build")
