"""Benchmark the merge queue: the serial queue against the default one, on the same branches.

For each scenario a factory is built once (sample system, a real pytest check plus a 1 s sleep,
N branches that each add one test file), copied twice, and queued in one copy by the serial queue
(max_batch 1, no cache, one slot) and in the other by the default queue (factory.toml's [queue] and
[executor], cache on: `slots` candidates at once, the CPU count).

    .venv/bin/python scripts/bench_queue.py [--scenarios B1,B2] [--branches 16] [--json out.json] [--keep]

Scenarios: B1 all green; B2 one always fails; B3 three fail; B4 all green but the suite fails 10%
of runs at random; B6 B1 merged, main rolled back, the same heads submitted again.

Live scenarios (the queue runs while submissions arrive, spread over `--arrival` seconds): L8 eight
green branches, L16R3 three red among sixteen. Each runs the serial queue and the queue with
`[executor] slots` 1, 2 and 4 on copies of the same branches, one after another in this run, and
prints each one's ratio to the serial queue:

    .venv/bin/python scripts/bench_queue.py --scenarios L8,L16R3 [--slots 1,2,4] [--arrival 0.5]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor import checks, env, repo  # noqa: E402
from supervisor.factory import Factory, init  # noqa: E402
from supervisor.gate import run_gate  # noqa: E402
from supervisor.queue import MergeQueue  # noqa: E402

SUT = "system-under-construction"

# The check: the sample system's real pytest run, plus 1 s of sleep at the end of a real run (not of
# `--collect-only`, so the queue's test-count guard costs what it costs in a real factory).
CHECK_TOML = """
[checks.tests]
run = ["python", "-m", "pytest", "-q"]
cwd = "system-under-construction"
stage = ["inner", "gate"]
timeout = 300
"""
CONFTEST = '''"""Benchmark fixture: every real test run takes 1 s longer (collection alone does not)."""

import time


def pytest_sessionfinish(session, exitstatus):
    if not session.config.option.collectonly:
        time.sleep(1)
'''
# B4: a suite check that fails 10% of runs, seeded from os.urandom so no two runs agree.
FLAKY = """#!/usr/bin/env python3
import os
import sys

if int.from_bytes(os.urandom(4), "big") < 0.10 * 2**32:
    print("flaky: random infrastructure failure (10% of runs)")
    sys.exit(1)
print("flaky: ok")
"""

SCENARIOS = {
    "B1": "all branches green",
    "B2": "one branch always fails",
    "B3": "three branches fail",
    "B4": "all green, the suite fails 10% of runs at random",
    "B6": "identical tree resubmitted after a rollback of main",
}
# Live arrivals: (description, branches, the failing ones like B3's, goal as a ratio to serial)
LIVE = {
    "L8": ("8 green branches arriving live", 8, False, 5.0),
    "L16R3": ("3 red among 16 arriving live", 16, True, 2.5),
}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def git(root: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> str:
    return repo.git(root, *args, input=input, env=env)


def failing_for(name: str, n: int) -> set[int]:
    """Which branch indices carry a real failing test: spread out, so bisection has work to do."""
    if name == "B2":
        return {n // 2} if n > 1 else {0}
    if name == "B3":
        return {i for i in (1, n // 2, n - 2) if 0 <= i < n} if n >= 4 else set(range(min(3, n)))
    return set()


@dataclass
class Template:
    root: Path
    base: str  # main before any branch merged
    branches: list[tuple[str, str, str]]  # (worker, branch, head sha)
    failing: set[int]


def make_factory(root: Path, *, flaky: bool) -> str:
    """A factory from the sample system with the benchmark's check suite committed on main."""
    init(root, sample=True)
    toml = root / "factory.toml"
    text = toml.read_text(encoding="utf-8")
    start = text.index("[checks.tests]")
    end = text.find("\n[", start + 1)
    text = text[:start] + CHECK_TOML.lstrip() + (text[end + 1 :] if end != -1 else "")
    toml.write_text(text, encoding="utf-8")
    (root / SUT / "conftest.py").write_text(CONFTEST, encoding="utf-8")
    paths = ["factory.toml", f"{SUT}/conftest.py"]
    if flaky:
        f = root / "checks" / "flaky"
        f.write_text(FLAKY, encoding="utf-8")
        f.chmod(0o755)
        paths.append("checks/flaky")
    env = repo.identity_env(root)
    git(root, "add", *paths)
    git(root, "commit", "-q", "-m", "bench: check suite", env=env)
    return git(root, "rev-parse", "HEAD")


def test_file(i: int, fails: bool) -> str:
    if fails:
        return (
            "from textstats import word_count\n\n\n"
            f"def test_b{i:02d}_counts_words():\n"
            f"    assert word_count('{'w ' * (i + 1)}') == {i + 2}  # deliberately wrong\n"
        )
    return (
        "from textstats import word_count\n\n\n"
        f"def test_b{i:02d}_counts_words():\n"
        f"    assert word_count('{'w ' * (i + 1)}') == {i + 1}\n"
    )


def make_branches(root: Path, base: str, n: int, failing: set[int]) -> list[tuple[str, str, str]]:
    """One commit per branch fac/wNN on top of main, each adding its own test file (plumbing only)."""
    env = repo.identity_env(root)
    index = root / ".git" / "bench-index"
    out = []
    for i in range(n):
        worker = f"w{i:02d}"
        branch = f"fac/{worker}"
        path = f"{SUT}/tests/test_b{i:02d}.py"
        blob = git(root, "hash-object", "-w", "--stdin", input=test_file(i, i in failing))
        ienv = {**env, "GIT_INDEX_FILE": str(index)}
        git(root, "read-tree", base, env=ienv)
        git(root, "update-index", "--add", "--cacheinfo", f"100644,{blob},{path}", env=ienv)
        tree = git(root, "write-tree", env=ienv)
        sha = git(root, "commit-tree", tree, "-p", base, input=f"{worker}: add {path}\n", env=env)
        git(root, "update-ref", f"refs/heads/{branch}", sha)
        out.append((worker, branch, sha))
    index.unlink(missing_ok=True)
    return out


def build(where: Path, name: str, n: int, failing: set[int] | None = None) -> Template:
    root = where / "template"
    base = make_factory(root, flaky=name == "B4")
    failing = failing_for(name, n) if failing is None else failing
    return Template(root, base, make_branches(root, base, n, failing), failing)


ENV_BUILDS: list[float] = []  # seconds per build of the system's environment, outside every makespan


def build_env(fac: Factory) -> None:
    """Build the factory's environment (project-container/) before anything is measured: the queue
    builds it once per hash, off the gate's hot path, and the benchmark reports that time on its own."""
    start = time.monotonic()
    built = env.ensure(fac)
    if built.kind != "host":
        ENV_BUILDS.append(round(time.monotonic() - start, 3))


def copy(t: Template, dst: Path) -> Factory:
    shutil.copytree(t.root, dst, symlinks=True)
    shutil.rmtree(dst / ".fac", ignore_errors=True)
    fac = Factory(dst)
    build_env(fac)
    return fac


def register(fac: Factory, branches: list[tuple[str, str, str]]) -> None:
    """The branches' workers as store rows only (no tmux: the bench measures the queue, not spawn)."""
    with fac.store.tx() as db:
        for worker, branch, _sha in branches:
            fac.store.add_worker(
                db,
                name=worker,
                role="worker",
                runtime="command",
                branch=branch,
                worktree=str(fac.worktree_path(worker)),
                state="working",
            )


def register_and_submit(fac: Factory, branches: list[tuple[str, str, str]], *, workers: bool = True) -> None:
    """Workers as rows only (no tmux: the bench measures the queue, not spawn), then `fac submit`."""
    if workers:
        register(fac, branches)
    for worker, branch, sha in branches:
        fac.store.enqueue(worker, branch, sha, None)


@dataclass
class Run:
    makespan: float
    check_runs: int
    cache_hits: int
    merged: int
    red: int
    flaky: int
    false_rejections: int
    culprits_rejected: int
    culprits: int
    other: dict[str, int] = field(default_factory=dict)


def queue_once(
    fac: Factory, t: Template, *, serial: bool, say: Callable[[str], None] | None, since: int = 0
) -> Run:
    # The serial queue: one branch per candidate, no cache, one candidate at a time (the default
    # queue runs `[executor] slots` candidates at once, the CPU count).
    serial_args: dict[str, object] = {"max_batch": 1, "use_cache": False, "slots": 1}
    q = MergeQueue(fac, say=say, **(serial_args if serial else {}))  # type: ignore[arg-type]
    start = time.monotonic()
    stats = q.run(once=True)
    return tally(fac, t, time.monotonic() - start, stats, since)


def tally(fac: Factory, t: Template, makespan: float, stats: Counter[str], since: int = 0) -> Run:
    """A run's outcome from the store: who was blamed (culprits or not), what else happened."""
    index = {worker: i for i, (worker, _b, _s) in enumerate(t.branches)}
    false_rej = culprits_rej = 0
    other: dict[str, int] = {}
    for e in fac.store.queue():
        if e.id <= since:
            continue
        bad = index[e.worker] in t.failing
        if e.state == "red":
            if bad:
                culprits_rej += 1
            else:
                false_rej += 1
        elif e.state == "merged" and bad:
            other["culprit merged"] = other.get("culprit merged", 0) + 1
        elif e.state != "merged":
            other[e.state] = other.get(e.state, 0) + 1
    return Run(
        round(makespan, 2),
        stats["check_runs"],
        stats["cache_hits"],
        stats["merged"],
        stats["red"],
        stats["flaky"],
        false_rej,
        culprits_rej,
        len(t.failing),
        other,
    )


def last_entry_id(fac: Factory) -> int:
    return max((e.id for e in fac.store.queue()), default=0)


def rollback_and_resubmit(fac: Factory, t: Template) -> int:
    """An operator's rollback: main back to where it was before the batch, the same heads again."""
    git(fac.root, "reset", "-q", "--hard", t.base)
    since = last_entry_id(fac)
    register_and_submit(fac, t.branches, workers=False)
    return since


def scenario(name: str, n: int, where: Path, say: Callable[[str], None] | None) -> dict[str, Run]:
    log(f"{name}: building {n} branches ({SCENARIOS[name]})")
    t = build(where, name, n)
    runs: dict[str, Run] = {}
    for mode in ("serial", "default"):
        fac = copy(t, where / mode)
        register_and_submit(fac, t.branches)
        since = 0
        if name == "B6":
            # Not measured: the batch merges once (default queue), then main is rolled back.
            log(f"{name} {mode}: first pass (default queue, not measured), then rollback of main")
            queue_once(fac, t, serial=False, say=say)
            since = rollback_and_resubmit(fac, t)
        log(f"{name} {mode}: running the queue")
        r = queue_once(fac, t, serial=mode == "serial", say=say, since=since)
        runs[mode] = r
        log(
            f"{name} {mode}: {r.makespan:.1f}s, {r.check_runs} check run(s), {r.cache_hits} cache hit(s), "
            f"{r.merged} merged, {r.red} red, {r.flaky} flaky" + (f", other {r.other}" if r.other else "")
        )
        fac.store.close()
    return runs


def live_modes(slots: list[int]) -> dict[str, dict[str, object]]:
    """The queues a live scenario compares: the serial one (one branch per candidate, no cache,
    one slot) and factory.toml's queue with each number of slots."""
    modes: dict[str, dict[str, object]] = {"serial": {"max_batch": 1, "use_cache": False, "slots": 1}}
    for n in slots:
        modes[f"slots {n}"] = {"slots": n}
    return modes


def live_once(
    fac: Factory,
    t: Template,
    queue_args: dict[str, object],
    arrival: float,
    say: Callable[[str], None] | None,
) -> Run:
    """The queue runs in a thread; the branches are submitted one by one, evenly spread over
    `arrival` seconds; the makespan runs from the first submission until every entry is decided."""
    register(fac, t.branches)
    q = MergeQueue(fac, say=say, **queue_args)  # type: ignore[arg-type]
    stop = threading.Event()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            q.run(should_stop=stop.is_set)
        except BaseException as e:
            failed.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(0.5)  # the queue is up and idle, waiting for submissions
    n = len(t.branches)
    start = time.monotonic()
    for i, (worker, branch, sha) in enumerate(t.branches):
        due = start + (arrival * i / (n - 1) if n > 1 else 0.0)
        time.sleep(max(0.0, due - time.monotonic()))
        fac.store.enqueue(worker, branch, sha, None)
    while not failed:
        if len(fac.store.queue()) == n and not fac.store.queue(("queued", "testing")):
            break
        time.sleep(0.05)
    makespan = time.monotonic() - start
    stop.set()
    thread.join()
    if failed:
        raise failed[0]
    return tally(fac, t, makespan, q.stats)


def live_scenario(
    name: str, where: Path, slots: list[int], arrival: float, say: Callable[[str], None] | None
) -> dict[str, Run]:
    what, n, red, _goal = LIVE[name]
    log(f"{name}: building {n} branches ({what}, arriving over {arrival:g}s)")
    t = build(where, name, n, failing_for("B3", n) if red else set())
    runs: dict[str, Run] = {}
    for mode, queue_args in live_modes(slots).items():
        fac = copy(t, where / mode.replace(" ", "-"))
        log(f"{name} {mode}: running the queue while the branches arrive")
        r = live_once(fac, t, queue_args, arrival, say)
        runs[mode] = r
        log(
            f"{name} {mode}: {r.makespan:.1f}s, {r.check_runs} check run(s), {r.cache_hits} cache hit(s), "
            f"{r.merged} merged, {r.red} red" + (f", other {r.other}" if r.other else "")
        )
        fac.store.close()
    return runs


def live_table(rows: list[dict]) -> str:
    head = ("scen", "queue", "makespan s", "check runs", "merged", "red", "false rej", "vs serial", "goal")
    lines = [head]
    for row in rows:
        serial = row["runs"]["serial"]["makespan"]
        for mode, r in row["runs"].items():
            ratio = serial / r["makespan"] if r["makespan"] else float("inf")
            goal = ""
            if mode != "serial":
                goal = f"{'MET' if ratio >= row['goal'] else 'MISSED'} (>={row['goal']:g}x serial)"
            lines.append(
                (
                    row["scenario"],
                    mode,
                    f"{r['makespan']:.1f}",
                    str(r["check_runs"]),
                    str(r["merged"]),
                    str(r["red"]),
                    str(r["false_rejections"]),
                    f"{ratio:.1f}x",
                    goal,
                )
            )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def measure_t(where: Path, runs: int = 3) -> list[float]:
    """Wall times of gate runs on main, in this process, the way the queue runs them (run_gate)."""
    root = where / "calibrate"
    if not root.exists():
        make_factory(root, flaky=False)
    base = git(root, "rev-parse", "HEAD")
    fac = Factory(root)
    build_env(fac)
    suite = checks.suite_from_rev(root, base, fac.fac_dir / "suites")
    times = []
    for _ in range(runs):
        start = time.monotonic()
        verdict = run_gate(fac, base, suite, fac.config.queue.parallel, base=base)
        times.append(round(time.monotonic() - start, 3))
        if not verdict.ok:
            raise SystemExit(f"bench: the check suite is red on a clean main: {verdict.as_dict()}")
    fac.store.close()
    return times


def sandbox_kind(where: Path) -> str:
    try:
        from supervisor import sandbox

        return sandbox.detect(where).detail
    except Exception as e:  # an older fac without sandboxes, or FAC_SANDBOX set to something unavailable
        return f"unknown ({e.__class__.__name__})"


def load() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def floor_for(name: str, n: int, t: float) -> float | None:
    if name in ("B1", "B4"):
        return t
    if name == "B2":
        return (1 + math.log2(n)) * t
    if name == "B6":
        return 0.0
    return None


def goal_for(name: str, row: dict) -> str:
    if name == "B1":
        ok = row["ratio"] >= 10 and row["default_vs_floor"] <= 1.3
        return f"{'MET' if ok else 'MISSED'} (>=10x serial, <=1.3x floor)"
    if name == "B4":
        ok = row["default"]["false_rejections"] == 0
        return f"{'MET' if ok else 'MISSED'} (0 false rejections)"
    if name == "B6":
        ok = row["default"]["check_runs"] == 0
        return f"{'MET' if ok else 'MISSED'} (0 check runs)"
    return ""


def table(rows: list[dict], t: float, samples: list[float]) -> str:
    head = (
        "scen",
        "serial s",
        "default s",
        "ser runs",
        "def runs",
        "false rej s/d",
        "culprits s/d",
        "ser/def",
        "floor s",
        "def/floor",
        "goal",
    )
    lines = [head]
    for r in rows:
        s, d = r["serial"], r["default"]
        lines.append(
            (
                r["scenario"],
                f"{s['makespan']:.1f}",
                f"{d['makespan']:.1f}",
                str(s["check_runs"]),
                str(d["check_runs"]),
                f"{s['false_rejections']}/{d['false_rejections']}",
                f"{s['culprits_rejected']}/{d['culprits_rejected']} of {d['culprits']}",
                f"{r['ratio']:.1f}x",
                "-" if r["floor"] is None else f"{r['floor']:.1f}",
                "-" if r["default_vs_floor"] is None else f"{r['default_vs_floor']:.2f}x",
                r["goal"],
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    runs = ", ".join(f"{x:.2f}" for x in samples)
    return "\n".join(out) + f"\nT = {t:.2f}s: median of {len(samples)} gate runs on main ({runs})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--scenarios",
        default=",".join([*SCENARIOS, *LIVE]),
        help="comma-separated subset of B1,B2,B3,B4,B6,L8,L16R3",
    )
    ap.add_argument("--slots", default="1,2,4", help="the live scenarios' [executor] slots (default 1,2,4)")
    ap.add_argument(
        "--arrival", type=float, default=0.5, help="seconds over which a live scenario's branches arrive"
    )
    ap.add_argument("--branches", type=int, default=16, help="branches per scenario (default 16)")
    ap.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    ap.add_argument("--keep", action="store_true", help="keep the temporary factories")
    ap.add_argument("--verbose", action="store_true", help="print the queues' own progress to stderr")
    args = ap.parse_args(argv)
    names = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS and s not in LIVE]
    slots = [int(x) for x in args.slots.split(",") if x.strip()]
    if unknown or args.branches < 2:
        ap.error(f"unknown scenario(s) {', '.join(unknown)}" if unknown else "--branches must be at least 2")

    # A private tmux server: message delivery asks tmux for panes and must never reach the user's.
    sock = f"fac-bench-{os.getpid()}-{os.urandom(3).hex()}"
    os.environ["FAC_TMUX_SOCKET"] = sock
    for var in ("FAC_ROOT", "FAC_WORKER", "FAC_ROLE", "FAC_BRANCH"):
        os.environ.pop(var, None)
    say = (lambda m: print(f"    {m}", file=sys.stderr, flush=True)) if args.verbose else None
    tmp = Path(tempfile.mkdtemp(prefix="fac-bench-"))
    rows: list[dict] = []
    live_rows: list[dict] = []
    try:
        log(f"work dir {tmp}; {os.cpu_count()} CPUs, load {load()}, checks run in: {sandbox_kind(tmp)}")
        log("measuring T (3 gate runs on main)")
        before = measure_t(tmp)
        log(f"T runs before: {', '.join(f'{x:.2f}' for x in before)}s")
        for name in [n for n in names if n in LIVE]:
            runs = live_scenario(name, tmp / name, slots, args.arrival, say)
            live_rows.append(
                {
                    "scenario": name,
                    "description": LIVE[name][0],
                    "arrival": args.arrival,
                    "goal": LIVE[name][3],
                    "runs": {mode: asdict(r) for mode, r in runs.items()},
                }
            )
        for name in [n for n in names if n in SCENARIOS]:
            runs = scenario(name, args.branches, tmp / name, say)
            s, d = runs["serial"], runs["default"]
            row = {
                "scenario": name,
                "description": SCENARIOS[name],
                "branches": args.branches,
                "serial": asdict(s),
                "default": asdict(d),
                "ratio": round(s.makespan / d.makespan, 2) if d.makespan else float("inf"),
            }
            rows.append(row)
        # The machine's load can drift during a long run: T is the median of gate runs taken before
        # and after the scenarios, and the floors are computed from that one T.
        after = measure_t(tmp)
        samples = before + after
        t = statistics.median(samples)
        log(f"T runs after: {', '.join(f'{x:.2f}' for x in after)}s; load {load()}; T = {t:.2f}s")
        for row in rows:
            floor = floor_for(row["scenario"], args.branches, t)
            row["floor"] = None if floor is None else round(floor, 2)
            row["default_vs_floor"] = round(row["default"]["makespan"] / floor, 2) if floor else None
            row["goal"] = goal_for(row["scenario"], row)
        if rows:
            print(table(rows, t, samples))
        else:
            print(f"T = {t:.2f}s: median of {len(samples)} gate runs on main")
        if live_rows:
            print(live_table(live_rows))
        if ENV_BUILDS:
            print(
                f"env build: {statistics.median(ENV_BUILDS):.2f}s (median of {len(ENV_BUILDS)} builds of "
                f"project-container/, max {max(ENV_BUILDS):.2f}s; before the queue runs, in no makespan)"
            )
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "T": t,
                        "T_samples": samples,
                        "env_builds": ENV_BUILDS,
                        "cpus": os.cpu_count(),
                        "load": load(),
                        "sandbox": sandbox_kind(tmp),
                        "rows": rows,
                        "live": live_rows,
                    },
                    indent=2,
                )
                + "\n",
                encoding="utf-8",
            )
            log(f"wrote {args.json}")
    finally:
        try:
            subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True, check=False)
        except OSError:
            pass
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
