#!/usr/bin/env python3
"""How much does `fac spawn` cost over doing its work by hand, and how fast does `fac` start?

Builds a factory with 2,000 generated files committed on main, then measures on a private tmux
server (never the default one) the median wall time of

  (a) `fac spawn worker --cmd 'sleep 60'`                                  (a subprocess)
  (b) `git worktree add -b BRANCH PATH main` + `tmux new-window -d ...`    (the raw equivalent)
  (c) (a) with FAC_NO_SPAWNER=1: the spawn in its own process, fac imported from scratch

(a) is `fac spawn` as a human runs it while the factory is up: the supervisor's spawner (fac loaded
once) forks it; the first spawn starts the factory, and the runs wait for the spawner's socket.

(a) gives the agent a repository of its own (borrowing the factory's objects through alternates)
and runs its pane in bubblewrap when it can; the report says which, and what the agent repository
cost (its git commands, from trace2) next to the raw `git worktree add`.

and the start time of `fac --version` (both `python -m supervisor` and the `fac` console script)
against `python -c pass`. Goals: spawn <= 1.5x raw, --version <= 3x python.

    .venv/bin/python scripts/bench_spawn.py [--runs 7] [--files 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor import spawner  # noqa: E402 (after the path is set)

SPAWN_GOAL = 1.5
START_GOAL = 3.0


def run(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> None:
    subprocess.run(argv, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def timed(fn: Callable[[], None], cpu: list[float] | None = None) -> float:
    """Wall time of `fn`; with `cpu`, also append the CPU time (user + sys) its subprocesses used."""
    # Start every sample with the page cache flushed: checking out 2,000 files leaves dirty pages
    # whose write-back would otherwise land on whichever run comes next.
    os.sync()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if cpu is not None:
        cpu.append((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime))
    return wall


def bench_env(tmp: Path, socket: str) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("FAC_ROOT", "FAC_WORKER", "FAC_ROLE", "FAC_BRANCH", "TMUX", "TMUX_PANE"):
        env.pop(var, None)
    env["FAC_TMUX_SOCKET"] = socket
    # Measure fac as installed: with cached bytecode, even where the environment disables it.
    if env.pop("PYTHONDONTWRITEBYTECODE", None):
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    for var, value in (
        ("GIT_AUTHOR_NAME", "bench"),
        ("GIT_AUTHOR_EMAIL", "bench@fac.invalid"),
        ("GIT_COMMITTER_NAME", "bench"),
        ("GIT_COMMITTER_EMAIL", "bench@fac.invalid"),
    ):
        env.setdefault(var, value)
    return env


def make_factory(tmp: Path, files: int, env: dict[str, str]) -> Path:
    from supervisor import factory

    root = tmp / "bench"
    factory.init(root)
    gen = root / "system-under-construction" / "generated"
    for i in range(files):
        d = gen / f"pkg{i // 100:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"mod{i:04d}.py").write_text(
            f'"""Generated module {i}."""\n\nVALUE = {i}\n\n\ndef f{i}(x):\n    return x + {i}\n'
        )
    run(["git", "add", "-A"], env, cwd=root)
    run(["git", "commit", "-q", "-m", f"{files} generated files"], env, cwd=root)
    return root


# The git commands that make a worker's tree: `worktree add` (raw, and older fac), or the agent
# repository's branch, init, update-ref and checkout (reset --hard).
TREE_COMMANDS = {"worktree", "branch", "init", "update-ref", "reset"}


def tree_seconds(trace: Path) -> float:
    """How long the git processes that made the worker's tree ran, from their trace2 event log."""
    names: dict[str, str] = {}
    exits: dict[str, float] = {}
    for line in trace.read_text().splitlines():
        ev = json.loads(line)
        sid = ev.get("sid", "")
        if "/" in sid:
            continue  # a child of a git process: counted in its parent's time
        if ev.get("event") == "cmd_name":
            names[sid] = ev["name"]
        elif ev.get("event") == "exit":
            exits[sid] = float(ev["t_abs"])
    times = [exits[sid] for sid, name in names.items() if name in TREE_COMMANDS and sid in exits]
    if not times:
        raise RuntimeError(f"no git command that makes a tree in {trace}")
    return sum(times)


def spawner_lines(root: Path) -> int:
    """How many requests the factory's spawner has served (its log has one line each)."""
    log = root / ".fac" / spawner.DIR_NAME / spawner.LOG_NAME
    return sum(" pid " in ln for ln in log.read_text().splitlines()) if log.exists() else 0


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="measured runs of each spawn variant (default 7)")
    ap.add_argument("--files", type=int, default=2000, help="files in the repository (default 2000)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()

    if shutil.which("tmux") is None or shutil.which("git") is None:
        print("bench_spawn: needs git and tmux (bash scripts/setup installs them)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="fac-bench-"))
    socket = f"fac-bench-{uuid.uuid4().hex[:8]}"
    env = bench_env(tmp, socket)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("GIT_", "FAC_"))})
    tmux = ["tmux", "-L", socket]
    py = sys.executable
    fac_script = str(Path(py).parent / "fac")
    if not os.path.exists(fac_script):
        fac_script = shutil.which("fac") or fac_script
    try:
        root = make_factory(tmp, args.files, env)
        raw_dir = root / ".fac" / "raw-worktrees"  # next to fac's own .fac/worktrees: same disk, same depth
        raw_dir.mkdir(parents=True)
        # One session for both variants, so neither pays for starting the tmux server.
        run([*tmux, "new-session", "-d", "-s", "fac-bench", "-n", "keep", "sleep", "3600"], env)

        counter = iter(range(10**6))
        traces = tmp / "trace2"
        traces.mkdir()

        def fac_spawn(n: int) -> None:
            trace = {"GIT_TRACE2_EVENT": str(traces / f"fac-{n}.json")}
            run([py, "-m", "supervisor", "spawn", "worker", "--cmd", "sleep 60"], {**env, **trace}, cwd=root)

        def cold_spawn(n: int) -> None:
            trace = {"GIT_TRACE2_EVENT": str(traces / f"cold-{n}.json"), spawner.OFF_ENV: "1"}
            run([py, "-m", "supervisor", "spawn", "worker", "--cmd", "sleep 60"], {**env, **trace}, cwd=root)

        def raw_spawn(n: int) -> None:
            path = raw_dir / f"r{n}"
            trace = {"GIT_TRACE2_EVENT": str(traces / f"raw-{n}.json")}
            run(
                ["git", "worktree", "add", "-q", "-b", f"raw/r{n}", str(path), "main"],
                {**env, **trace},
                cwd=root,
            )
            window = ["new-window", "-d", "-t", "=fac-bench:", "-n", f"r{n}", "-c", str(path), "sleep", "60"]
            run([*tmux, *window], env)

        # Warm up once (page cache, bytecode; the first spawn starts the factory, and with it the
        # spawner), then rotate the variants so drift hits all alike.
        fac_spawn(next(counter))
        raw_spawn(next(counter))
        cold_spawn(next(counter))
        sock = root / ".fac" / spawner.DIR_NAME / spawner.SOCKET_NAME
        deadline = time.monotonic() + 60
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        warm = sock.exists()
        served_before = spawner_lines(root)
        fac_times, raw_times, fac_git, raw_git, fac_cpu, raw_cpu = [], [], [], [], [], []
        cold_times, cold_git, cold_cpu = [], [], []
        load_before = os.getloadavg()[0]
        for i in range(args.runs):
            n = next(counter)
            variants = [
                (fac_spawn, fac_times, fac_git, fac_cpu, "fac"),
                (raw_spawn, raw_times, raw_git, raw_cpu, "raw"),
                (cold_spawn, cold_times, cold_git, cold_cpu, "cold"),
            ]
            for fn, samples, git_samples, cpu, kind in variants[i % 3 :] + variants[: i % 3]:
                samples.append(timed(lambda fn=fn, n=n: fn(n), cpu))
                git_samples.append(tree_seconds(traces / f"{kind}-{n}.json"))
        served = spawner_lines(root) - served_before

        starts: dict[str, list[float]] = {
            "python -c pass": [],
            "python -m supervisor --version": [],
            "fac --version": [],
        }
        argvs = {
            "python -c pass": [py, "-c", "pass"],
            "python -m supervisor --version": [py, "-m", "supervisor", "--version"],
            "fac --version": [fac_script, "--version"],
        }
        for argv in argvs.values():
            run(argv, env)  # warm up
        for _ in range(max(args.runs, 3) * 3):
            for name, argv in argvs.items():
                starts[name].append(timed(lambda argv=argv: run(argv, env)))
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            probe = subprocess.run([*tmux, "list-sessions"], capture_output=True, text=True)
            if probe.returncode != 0 and ("no server" in probe.stderr or "error connecting" in probe.stderr):
                break
            time.sleep(0.05)
        sock_path = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}" / socket
        sock_path.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)

    load_after = os.getloadavg()[0]
    from supervisor import isolation

    reason = isolation.unconfined()
    sandboxed = "bubblewrap" if not reason else f"none ({reason})"
    fac_ms, raw_ms, cold_ms = median_ms(fac_times), median_ms(raw_times), median_ms(cold_times)
    # fac's own cost: its wall time minus the `git worktree add` it ran, run by run; this part does
    # not depend on how fast the disk checks out 2,000 files.
    overhead_ms = median_ms([t - g for t, g in zip(fac_times, fac_git, strict=True)])
    cold_overhead_ms = median_ms([t - g for t, g in zip(cold_times, cold_git, strict=True)])
    base = median_ms(starts["python -c pass"])
    result = {
        "files": args.files,
        "runs": args.runs,
        "spawn": {
            "fac_ms": round(fac_ms, 1),
            "raw_ms": round(raw_ms, 1),
            "ratio": round(fac_ms / raw_ms, 2),
            "goal": SPAWN_GOAL,
            "fac_agent_repo_ms": round(median_ms(fac_git), 1),
            "raw_worktree_add_ms": round(median_ms(raw_git), 1),
            "agent_repo_ratio": round(median_ms(fac_git) / median_ms(raw_git), 2),
            "sandbox": sandboxed,
            "fac_overhead_ms": round(overhead_ms, 1),
            "fac_cpu_ms": round(median_ms(fac_cpu), 1),
            "raw_cpu_ms": round(median_ms(raw_cpu), 1),
            "spawner": warm,
            "spawner_served": served,
            "cold_ms": round(cold_ms, 1),
            "cold_ratio": round(cold_ms / raw_ms, 2),
            "cold_overhead_ms": round(cold_overhead_ms, 1),
            "cold_cpu_ms": round(median_ms(cold_cpu), 1),
        },
        "start": {
            name: {"ms": round(median_ms(s), 1), "ratio": round(median_ms(s) / base, 2)}
            for name, s in starts.items()
        },
        "start_goal": START_GOAL,
        "bytecode_cached": True,
        "load_average": [round(load_before, 2), round(load_after, 2)],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    s = result["spawn"]
    print(f"repository: {args.files} files; median of {args.runs} runs each; tmux socket {socket}")
    print(f"load average {load_before:.2f} before, {load_after:.2f} after (wall times stretch with load)")
    print(f"agents' sandbox: {s['sandbox']}")
    print(f"spawn   fac spawn worker --cmd 'sleep 60'        {s['fac_ms']:7.1f} ms")
    print(f"        git worktree add + tmux new-window      {s['raw_ms']:7.1f} ms")
    verdict = "ok" if s["ratio"] <= SPAWN_GOAL else "over the goal"
    print(f"        ratio {s['ratio']:.2f}x (goal <= {SPAWN_GOAL}x: {verdict})")
    print(
        f"        of which making the tree: fac's agent repository {s['fac_agent_repo_ms']:.1f} ms"
        f" ({s['agent_repo_ratio']:.2f}x), raw git worktree add {s['raw_worktree_add_ms']:.1f} ms;"
        f" fac's own overhead {s['fac_overhead_ms']:.1f} ms"
    )
    print(
        f"        through the spawner: {s['spawner_served']} of {args.runs} runs"
        + ("" if s["spawner"] else " (its socket never appeared)")
    )
    print(
        f"        CPU time (user+sys, this process's children): fac {s['fac_cpu_ms']:.1f} ms"
        f" (the spawner's fork is not its child), raw {s['raw_cpu_ms']:.1f} ms"
    )
    print(
        f"cold    FAC_NO_SPAWNER=1 fac spawn ...               {s['cold_ms']:7.1f} ms"
        f"  ratio {s['cold_ratio']:.2f}x; fac's own overhead {s['cold_overhead_ms']:.1f} ms,"
        f" CPU {s['cold_cpu_ms']:.1f} ms"
    )
    for name, r in result["start"].items():
        extra = "" if name == "python -c pass" else f"  {r['ratio']:.2f}x (goal <= {START_GOAL}x)"
        print(f"start   {name:<40} {r['ms']:7.1f} ms{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
