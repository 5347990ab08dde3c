"""Checks: discover the suite, run it in parallel with timeouts, and say precisely why a check failed.

A suite is the `[checks.*]` of a factory.toml plus every executable file in `checks/`. The gate
suite is always read from main (git objects, not a working tree), so a branch cannot change the
checks it is judged by. Results are cached by (tree id, suite hash): a tree that was checked once
is never checked again with the same suite.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from supervisor import config as configmod
from supervisor import repo
from supervisor.config import CheckDef
from supervisor.errors import FacError
from supervisor.sandbox import Sandbox

TAIL_CHARS = 4000
FEEDBACK_CHARS = 2000
SUITE_FORMAT = "1"  # bump when the way checks run changes, so old cache entries stop matching


class Cancelled(Exception):
    """A gate run stopped by its `Cancel` (a speculative candidate built on one that went red): it
    has no verdict, so nothing may record, cache or blame it."""


class Cancel:
    """Stops a gate run: every check process it started is killed (its whole process group), and
    none starts after. One per candidate under test; `cancel()` may come from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._procs: dict[int, tuple[subprocess.Popen[bytes], Callable[[], None] | None]] = {}
        self._hooks: list[Callable[[], None]] = []
        self.cancelled = False

    def cancel(self) -> None:
        with self._lock:
            first = not self.cancelled
            self.cancelled = True
            procs = list(self._procs.values())
            hooks = list(self._hooks) if first else []
        for proc, stop in procs:
            _kill_group(proc)
            if stop is not None:
                stop()
        for hook in hooks:
            hook()

    def on_cancel(self, stop: Callable[[], None]) -> None:
        """Call `stop` when the run is cancelled (at once if it already was): a remote run's hook."""
        with self._lock:
            self._hooks.append(stop)
            late = self.cancelled
        if late:
            stop()

    def check(self) -> None:
        """Raise `Cancelled` once cancelled (between the steps of a gate run)."""
        if self.cancelled:
            raise Cancelled()

    def track(self, proc: subprocess.Popen[bytes], stop: Callable[[], None] | None) -> None:
        """`proc` belongs to this run; killed at once if the run was cancelled meanwhile."""
        with self._lock:
            self._procs[proc.pid] = (proc, stop)
            late = self.cancelled
        if late:
            _kill_group(proc)
            if stop is not None:
                stop()

    def untrack(self, proc: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._procs.pop(proc.pid, None)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    exit_code: int | None
    duration: float
    feedback: str
    tail: str
    kind: str = "deterministic"
    required: bool = True
    timed_out: bool = False
    log: str | None = None
    # False when a rerun cannot honestly clear the failure: a guard, a new test that fails, a test
    # that main has and the candidate lost, an incomplete report. Only failures main knows retry.
    retryable: bool = True
    # Test ids a human may approve away with `fac approve` (the ratchet's findings).
    waivable: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        fields = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "waivable" in fields:
            fields["waivable"] = tuple(fields["waivable"])
        return cls(**fields)


@dataclass(frozen=True)
class Suite:
    checks: tuple[CheckDef, ...]
    hash: str
    origin: str  # "main@<sha>" or a directory
    files_dir: Path | None = None

    def for_stage(self, stage: str) -> tuple[CheckDef, ...]:
        return tuple(c for c in self.checks if stage in c.stage)


@dataclass
class Verdict:
    ok: bool
    results: list[CheckResult] = field(default_factory=list)
    cached: bool = False
    sha: str | None = None
    tree: str | None = None
    ran: tuple[str, str | None] | None = None  # (executor kind, its worker's address) of a real run

    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.ok and r.required]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "cached": self.cached,
            "sha": self.sha,
            "tree": self.tree,
            "results": [r.as_dict() for r in self.results],
        }


def _suite_hash(defs: list[dict[str, Any]], files: list[tuple[str, str]]) -> str:
    blob = json.dumps({"format": SUITE_FORMAT, "defs": defs, "files": sorted(files)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _defs_for_hash(checks: tuple[CheckDef, ...]) -> list[dict[str, Any]]:
    return [{k: v for k, v in asdict(c).items() if k != "source"} for c in checks]


def suite_from_rev(root: Path, rev: str, cache_dir: Path) -> Suite:
    """The suite as committed at `rev` (main's, for the gate): its factory.toml and checks/ files."""
    sha = repo.rev_parse(root, rev)
    if sha is None:
        raise FacError(f"{rev!r} is not a commit", hint="pass a branch, tag or sha")
    text = repo.show_file(root, sha, configmod.CONFIG_NAME) or ""
    cfg = configmod.parse(text, default_name=root.name, where=f"{configmod.CONFIG_NAME} at {rev}")
    blobs = [(p, s) for mode, s, p in repo.ls_tree(root, sha, "checks") if mode == "100755"]
    files = [(Path(p).name, s) for p, s in blobs]
    suite_hash = _suite_hash(_defs_for_hash(cfg.checks), files)
    files_dir = cache_dir / suite_hash
    if blobs and not files_dir.exists():
        tmp = files_dir.with_name(files_dir.name + f".tmp{os.getpid()}")
        tmp.mkdir(parents=True, exist_ok=True)
        for path, blob in blobs:
            data = repo.blob(root, blob)
            dst = tmp / Path(path).name
            dst.write_bytes(data)
            dst.chmod(0o755)
        try:
            tmp.rename(files_dir)
        except OSError:  # another process materialized it first
            shutil.rmtree(tmp, ignore_errors=True)
    file_checks = tuple(
        CheckDef(name=name, run=(str(files_dir / name),), source=f"checks/{name}") for name, _ in files
    )
    return Suite(
        checks=(*cfg.checks, *file_checks), hash=suite_hash, origin=f"{rev}@{sha[:10]}", files_dir=files_dir
    )


def suite_from_dir(directory: Path) -> Suite:
    """The suite of a working tree as it is on disk (the inner loop of a human or an agent)."""
    text = (
        (directory / configmod.CONFIG_NAME).read_text(encoding="utf-8")
        if (directory / configmod.CONFIG_NAME).exists()
        else ""
    )
    cfg = configmod.parse(text, default_name=directory.name, where=str(directory / configmod.CONFIG_NAME))
    checks_dir = directory / "checks"
    files = []
    file_checks = []
    if checks_dir.is_dir():
        for p in sorted(checks_dir.iterdir()):
            if p.is_file() and os.access(p, os.X_OK):
                files.append((p.name, hashlib.sha1(p.read_bytes()).hexdigest()))
                file_checks.append(CheckDef(name=p.name, run=(str(p),), source=f"checks/{p.name}"))
    return Suite(
        checks=(*cfg.checks, *file_checks),
        hash=_suite_hash(_defs_for_hash(cfg.checks), files),
        origin=str(directory),
        files_dir=checks_dir if files else None,
    )


def argv_of(check: CheckDef) -> list[str]:
    """The check's command as an argument list; a string is split like a shell would, never run by one."""
    if isinstance(check.run, str):
        try:
            return shlex.split(check.run)
        except ValueError as e:
            raise FacError(f"[checks.{check.name}] run: cannot split {check.run!r}: {e}") from None
    return list(check.run)


def pytest_at(argv: list[str]) -> int | None:
    """Where the pytest program is in a check's command (`pytest`, `py.test`, `-m pytest`); None if not."""
    for i, arg in enumerate(argv):
        if Path(arg).name in ("pytest", "py.test") or (arg == "pytest" and i > 0 and argv[i - 1] == "-m"):
            return i
    return None


def safe_argv(argv: list[str]) -> list[str]:
    """`python -m pytest ...` with Python's safe-path mode (-P): a `pytest.py` in the working directory
    cannot shadow pytest. Other commands are left alone (PYTHONSAFEPATH=1 in the environment too)."""
    at = pytest_at(argv)
    if at is not None and at >= 2 and argv[at - 1] == "-m" and Path(argv[0]).name.startswith("python"):
        return [argv[0], "-P", *argv[1:]] if "-P" not in argv[1:at] else list(argv)
    return list(argv)


# Variables that change how Python or pytest start (PYTHONPATH, PYTHONHOME, PYTHONSTARTUP,
# PYTEST_ADDOPTS, PYTEST_PLUGINS, ...): whoever started fac must not change how a check judges the
# tree under test.
_HIJACK_PREFIXES = ("PYTHON", "PYTEST_")


def check_env(workdir: Path, stage: str, check: CheckDef, sandbox: Sandbox | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_HIJACK_PREFIXES)}
    env["PYTHONSAFEPATH"] = "1"
    # The system's environment (project-container/, built by supervisor.env) is first on PATH, so
    # `python` is its interpreter; fac's own directory follows, so `fac` (judgment checks) is found.
    first = [sandbox.env_bin] if sandbox is not None and sandbox.env_bin else []
    env["PATH"] = os.pathsep.join([*first, str(Path(sys.executable).parent), env.get("PATH", "")])
    if first:
        env["VIRTUAL_ENV"] = str(Path(first[0]).parent)
    env["FAC_CHECK_STAGE"] = stage
    env["FAC_CHECK_REQUIRED"] = "1" if check.required else "0"
    env["FAC_CANDIDATE"] = str(workdir)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["COLUMNS"] = "200"  # wide enough that pytest does not cut its summary lines
    env.update(dict(check.env))
    return env


def run_one(
    check: CheckDef,
    workdir: Path,
    stage: str,
    log_dir: Path,
    sandbox: Sandbox | None = None,
    report: Path | None = None,
    args: tuple[str, ...] = (),
    cancel: Cancel | None = None,
) -> CheckResult:
    """Run one check in its own process group; a timeout kills the whole group, and so does `cancel`
    (then `Cancelled` is raised: a cancelled check has no result).

    A pytest check given `report` writes its junit report there through an inherited file
    descriptor: the file lies outside everything the sandbox lets the check write, so nothing in the
    tree under test can leave a report behind for the gate to read. `args` are appended (test files).
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{safe_name(check.name)}.log"
    cwd = (workdir / check.cwd).resolve()
    start = time.monotonic()

    def result(
        ok: bool, code: int | None, feedback: str, tail: str = "", timed_out: bool = False
    ) -> CheckResult:
        return CheckResult(
            name=check.name,
            ok=ok,
            exit_code=code,
            duration=round(time.monotonic() - start, 3),
            feedback=feedback,
            tail=tail,
            kind=check.kind,
            required=check.required,
            timed_out=timed_out,
            log=str(log_path),
        )

    if cancel is not None:
        cancel.check()
    if not cwd.is_dir():
        return result(False, None, f"cwd {check.cwd!r} does not exist in the tree under test")
    argv = safe_argv([*argv_of(check), *args])
    env = check_env(workdir, stage, check, sandbox)
    missing = missing_program(argv[0], cwd, env.get("PATH", ""))
    if missing is not None and (sandbox is None or sandbox.kind != "container"):
        # (a container's programs are the image's: only its own exit 127 can tell)
        return result(False, None, f"command not found: {missing}")
    container: str | None = None
    at = pytest_at(argv)
    report_file = None
    writable = [workdir]
    if report is not None and at is not None:
        report.parent.mkdir(parents=True, exist_ok=True)
        report_file = open(report, "wb")  # noqa: SIM115 (closed below, after the process ends)
        in_container = sandbox is not None and sandbox.kind == "container"
        # A container gets no inherited descriptors: its report directory is mounted instead.
        target = str(report) if in_container else f"/dev/fd/{report_file.fileno()}"
        if in_container:
            writable.append(report.parent)
        argv = [*argv[: at + 1], f"--junitxml={target}", *argv[at + 1 :]]
    if sandbox is not None and sandbox.kind != "none" and check.kind != "judgment":
        # A private, writable TMPDIR beside the logs; everything but the tree under test is read-only.
        tmp = log_dir / f"tmp-{check.name}"
        tmp.mkdir(parents=True, exist_ok=True)
        env["TMPDIR"] = str(tmp)
        if sandbox.kind == "container":
            container = f"fac-check-{os.getpid()}-{time.monotonic_ns()}"
        argv = sandbox.wrap(argv, cwd, [*writable, tmp], name=container)
    timed_out = False
    with open(log_path, "wb") as log:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=(report_file.fileno(),) if report_file else (),
            )
        except (FileNotFoundError, PermissionError) as e:
            if report_file:
                report_file.close()
            if isinstance(e, FileNotFoundError):
                return result(False, None, f"command not found: {argv[0]}")
            return result(False, None, f"cannot start {argv[0]!r}: {e.strerror}")
        if report_file:
            report_file.close()  # the child holds its own copy
        stop = functools.partial(sandbox.stop, container) if sandbox is not None and container else None
        if cancel is not None:
            cancel.track(proc, stop)
        try:
            code = proc.wait(timeout=check.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            if stop is not None:
                stop()  # the client is gone; the container would run on
            code = proc.wait()
        finally:
            if cancel is not None:
                cancel.untrack(proc)
    if cancel is not None:
        cancel.check()  # killed by a cancel: its exit status says nothing about the candidate
    tail = _tail(log_path)
    if timed_out:
        return result(
            False,
            None,
            f"timed out after {check.timeout:g}s (process group killed)\n{_last_lines(tail, 10)}",
            tail,
            timed_out=True,
        )
    ok = code == 0
    if not ok and (name := _not_found_in(tail, code)):
        return result(False, code, f"command not found: {name}", tail)
    return result(ok, code, "" if ok else feedback_from(tail, code), tail)


def missing_program(program: str, cwd: Path, path: str) -> str | None:
    """`program` when it cannot be found (on `path`, or relative to `cwd` when it has a slash)."""
    if "/" in program:
        p = Path(program) if Path(program).is_absolute() else cwd / program
        return None if p.is_file() else program
    return None if shutil.which(program, path=path) else program


_BWRAP_NOT_FOUND = re.compile(r"bwrap: execvp (.+?): No such file or directory")
# How a container engine or a shell reports a program it cannot find (exit 127).
_NOT_FOUND = (
    re.compile(r'exec: "([^"]+)": executable file not found', re.M),
    re.compile(r"^(?:\S+: )?(?:line )?(?:\d+: )?(\S+): (?:command )?not found$", re.M),
)


def _not_found_in(output: str, code: int | None) -> str | None:
    """The program a failed check's output says was not found (bubblewrap's own one-line message, or
    exit 127 from an engine or a shell), else None."""
    m = _BWRAP_NOT_FOUND.fullmatch(output.strip())
    if m:
        return m.group(1)
    if code != 127:
        return None
    for pattern in _NOT_FOUND:
        m = pattern.search(output)
        if m:
            return m.group(1)
    return None


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def safe_name(name: str) -> str:
    """A check's name as a file name: its log, its junit report, a remote run's shipped log."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def tail(path: Path, limit: int = TAIL_CHARS) -> tuple[str, int]:
    """The last `limit` bytes of the file at `path`, decoded, and how many bytes came before them."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size > limit:
            f.seek(size - limit)
        data = f.read()
    return data.decode("utf-8", errors="replace"), max(0, size - limit)


def _tail(path: Path) -> str:
    text, cut = tail(path)
    return "..." + text if cut else text


def _last_lines(text: str, n: int) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return "\n".join(lines[-n:])


_PYTEST_SUMMARY = re.compile(r"^(FAILED|ERROR) (\S+)(?: - (.*))?$")
_PYTEST_E = re.compile(r"^E\s{2,}(.*)$")
_PYTEST_LOCATION = re.compile(r"^(\S+\.py):(\d+): (\w+)$")


def feedback_from(output: str, code: int | None) -> str:
    """A short, precise reason: for pytest the failing test ids with their assertion lines."""
    lines = output.splitlines()
    failed = [m for m in (_PYTEST_SUMMARY.match(line) for line in lines) if m]
    if failed:
        details = [m.group(1) for m in (_PYTEST_E.match(line) for line in lines) if m]
        locations = [
            f"{m.group(1)}:{m.group(2)}" for m in (_PYTEST_LOCATION.match(line) for line in lines) if m
        ]
        out = []
        for m in failed:
            reason = f" - {m.group(3)}" if m.group(3) else ""
            out.append(f"{m.group(1)} {m.group(2)}{reason}")
        if locations:
            out.append("at " + ", ".join(dict.fromkeys(locations)))
        if details:
            out.append("assertion:")
            out.extend(f"  {d}" for d in details[:8])
        summary = next((line for line in reversed(lines) if re.search(r"\d+ (failed|error)", line)), None)
        if summary:
            out.append(summary.strip("= "))
        return _clip("\n".join(out))
    last = _last_lines(output, 15)
    if len(last) > FEEDBACK_CHARS - 100:  # the reason is at the end of the output: keep the end
        last = "..." + last[-(FEEDBACK_CHARS - 100) :]
    return _clip(f"exit code {code}" + (f"; last output:\n{last}" if last else " and no output"))


def _clip(text: str) -> str:
    return text if len(text) <= FEEDBACK_CHARS else text[: FEEDBACK_CHARS - 20] + "\n... (truncated)"


# Told as each check starts (name, None) and as it ends (name, its result), from the thread that runs it.
Progress = Callable[[str, CheckResult | None], None]


def run_suite(
    checks: tuple[CheckDef, ...],
    workdir: Path,
    stage: str,
    *,
    parallel: int,
    log_dir: Path,
    extra: list[Callable[[], CheckResult]] | None = None,
    extra_names: tuple[str, ...] = (),
    sandbox: Sandbox | None = None,
    reports: dict[str, Path] | None = None,
    progress: Progress | None = None,
) -> list[CheckResult]:
    """Run checks (and extra built-in checks, named by `extra_names`) in parallel; results in a stable
    order. A check named in `reports` writes its junit report there. `progress` hears each start and end
    as it happens."""
    jobs: list[tuple[str, Callable[[], CheckResult]]] = [
        (c.name, functools.partial(run_one, c, workdir, stage, log_dir, sandbox, (reports or {}).get(c.name)))
        for c in checks
    ]
    more = extra or []
    names = [*extra_names, *(f"check {i + 1}" for i in range(len(extra_names), len(more)))]
    jobs += list(zip(names, more, strict=True))
    if not jobs:
        return []

    def run(job: tuple[str, Callable[[], CheckResult]]) -> CheckResult:
        name, fn = job
        if progress is not None:
            progress(name, None)
        r = fn()
        if progress is not None:
            progress(name, r)
        return r

    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(jobs)))) as pool:
        return list(pool.map(run, jobs))


def mark(r: CheckResult) -> str:
    """PASS, FAIL (a required check failed) or warn (an advisory one did)."""
    return "PASS" if r.ok else ("FAIL" if r.required else "warn")


def progress_line(name: str, result: CheckResult | None, clock: str) -> str:
    """One line of a suite's progress: a check starting, or ending with its verdict and time."""
    if result is None:
        return f"{clock}  start {name}"
    return f"{clock}  {mark(result):<5} {name} ({result.duration:.1f}s)"


def suite_ok(results: list[CheckResult]) -> bool:
    return all(r.ok for r in results if r.required)
