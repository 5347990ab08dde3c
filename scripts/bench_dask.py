"""Benchmark the Dask executor against the local one: the overhead per candidate of running each
candidate's gate suite as a task on a Dask cluster (a `dask scheduler` and two `dask worker`
processes on 127.0.0.1, started and stopped here) instead of in subprocesses of the queue.

The same factory (the sample system, its pytest check and a 1 s check) is copied twice, each copy
with a bare repository as `[factory] remote`, one with `[executor] kind = "local"`, the other with
`kind = "dask"`. Environments and the workers' replicas are warmed before anything is measured.

1. Gate runs: each of N candidates (main + one branch) is judged (no cache) by both executors in
   turn, `--repeat` times, local and Dask interleaved so the machine's load hits both alike; the
   overhead is the median of the paired differences.
2. The queue: the same N branches queued in both copies by the serial queue (max_batch 1, no
   cache: one candidate per branch, each really run, landed by push to the remote).

    .venv/bin/python scripts/bench_dask.py [--branches 6] [--repeat 3] [--json out.json]

Goal (issue 15): Dask's overhead per candidate <= 0.3 s over local.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor import checks, env, executors, gate, repo  # noqa: E402
from supervisor.factory import Factory, init  # noqa: E402
from supervisor.queue import MergeQueue  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_queue import register  # noqa: E402  (the branches' workers as store rows, as there)

SUT = "system-under-construction"
BIN = Path(sys.executable).parent
GOAL = 0.3
SLOW = "#!/bin/sh\n# the benchmark's 1 s check\nsleep 1\n"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, as a user starts them."""

    def __init__(self, where: Path) -> None:
        self.env = {**os.environ, "FAC_EXECUTOR_CACHE": str(where / "replicas"), "PIP_NO_INDEX": "1"}
        self.env["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"
        port = free_port()
        self.address = f"tcp://127.0.0.1:{port}"
        self.procs = [
            self._start(["scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])
        ]
        for _ in range(2):
            self.procs.append(
                self._start(
                    ["worker", self.address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"]
                )
            )
        import distributed

        with distributed.Client(self.address, timeout=60) as client:
            client.wait_for_workers(2, timeout=60)

    def _start(self, args: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [str(BIN / "dask"), *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        for p in reversed(self.procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def make_template(root: Path, n: int) -> list[tuple[str, str, str]]:
    """The sample factory with a 1 s check on main, and N branches fac/wNN adding one test each."""
    init(root, sample=True)
    slow = root / "checks" / "slow"
    slow.write_text(SLOW, encoding="utf-8")
    slow.chmod(0o755)
    ident = repo.identity_env(root)
    repo.git(root, "add", "checks/slow")
    repo.git(root, "commit", "-q", "-m", "bench: a 1 s check", env=ident)
    base = repo.git(root, "rev-parse", "HEAD")
    out = []
    for i in range(n):
        worker = f"w{i:02d}"
        test = f"def test_b{i:02d}():\n    assert {i} + 1 == {i + 1}\n"
        sha = repo.build_commit(root, base, {f"{SUT}/tests/test_b{i:02d}.py": test}, f"{worker}: a test\n")
        repo.git(root, "update-ref", f"refs/heads/fac/{worker}", sha)
        out.append((worker, f"fac/{worker}", sha))
    return out


def copy(template: Path, dst: Path, executor: str) -> Factory:
    """A copy of the template with its own bare remote and `[executor]`, its environment built."""
    shutil.copytree(template, dst, symlinks=True)
    shutil.rmtree(dst / ".fac", ignore_errors=True)
    bare = dst.parent / f"{dst.name}.git"
    repo.git(dst.parent, "init", "-q", "--bare", "-b", "main", str(bare))
    repo.git(dst, "remote", "add", "origin", str(bare))
    toml = dst / "factory.toml"
    text = toml.read_text(encoding="utf-8").replace(
        'main = "main"\n', 'main = "main"\nremote = "origin"\n', 1
    )
    toml.write_text(text + executor, encoding="utf-8")
    repo.git(dst, "commit", "-q", "-am", "bench: main on a remote", env=repo.identity_env(dst))
    repo.git(dst, "push", "-q", "origin", "main")
    fac = Factory(dst)
    env.ensure(fac)
    return fac


def warm(fac: Factory) -> None:
    """One gate run of main through the factory's executor: a worker's replica clones and builds its
    environment once, outside what is measured (the local copy built its own in `copy`)."""
    ex = executors.for_factory(fac)
    main = repo.git(fac.root, "rev-parse", "main")
    suite = checks.suite_from_rev(fac.root, main, fac.fac_dir / "suites")
    try:
        for _ in range(2):  # both workers, most likely
            gate.judge(fac, main, suite, cache="off", executor=ex)
    finally:
        ex.close()


def candidates(fac: Factory, branches: list[tuple[str, str, str]]) -> list[str]:
    """One candidate per branch on main, as the queue builds them (merge-tree, commit-tree)."""
    main = repo.git(fac.root, "rev-parse", "main")
    out = []
    for worker, _branch, sha in branches:
        merged = repo.merge_tree(fac.root, main, sha)
        assert merged.tree is not None
        out.append(repo.commit_tree(fac.root, merged.tree, [main, sha], f"bench: {worker}\n"))
    return out


def gate_runs(fac: Factory, shas: list[str], repeat: int) -> dict[str, list[float]]:
    """Wall time of `gate.judge` (no cache) per candidate, local and Dask interleaved."""
    ex = executors.for_factory(fac)
    main = repo.git(fac.root, "rev-parse", "main")
    suite = checks.suite_from_rev(fac.root, main, fac.fac_dir / "suites")
    times: dict[str, list[float]] = {"local": [], "dask": []}
    try:
        for r in range(repeat):
            for i, sha in enumerate(shas):
                order = (("local", gate.LOCAL), ("dask", ex))
                for kind, executor in order if (r + i) % 2 == 0 else order[::-1]:
                    start = time.monotonic()
                    v = gate.judge(fac, sha, suite, cache="off", base=main, executor=executor)
                    times[kind].append(time.monotonic() - start)
                    if not v.ok:
                        raise SystemExit(f"bench: candidate {sha[:10]} red on {kind}: {v.failed()}")
    finally:
        ex.close()
    return times


def queue(fac: Factory, branches: list[tuple[str, str, str]]) -> float:
    register(fac, branches)
    for worker, branch, sha in branches:
        fac.store.enqueue(worker, branch, sha, None)
    q = MergeQueue(fac, max_batch=1, use_cache=False, slots=1)  # serial: one candidate at a time
    start = time.monotonic()
    stats = q.run(once=True)
    took = time.monotonic() - start
    if stats["merged"] != len(branches):
        raise SystemExit(f"bench: only {stats['merged']} of {len(branches)} merged ({dict(stats)})")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--branches", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    where = Path(tempfile.mkdtemp(prefix="fac-bench-dask-"))
    cluster = None
    try:
        log(f"template: {args.branches} branches; a local Dask cluster (a scheduler and two workers)")
        branches = make_template(where / "template", args.branches)
        cluster = LocalCluster(where)
        dask_toml = f'\n[executor]\nkind = "dask"\nscheduler = "{cluster.address}"\n'
        fac = copy(where / "template", where / "gate", dask_toml)
        warm(fac)
        log(f"gate runs: {args.branches} candidates x {args.repeat}, local and Dask interleaved")
        runs = gate_runs(fac, candidates(fac, branches), args.repeat)
        fac.store.close()
        pairs = [d - lo for d, lo in zip(runs["dask"], runs["local"], strict=True)]
        per = statistics.median(pairs)
        walls: dict[str, float] = {}
        for kind, extra in (("local", ""), ("dask", dask_toml)):
            q = copy(where / "template", where / f"queue-{kind}", extra)
            if kind == "dask":
                warm(q)
            walls[kind] = queue(q, branches)
            q.store.close()
            log(f"queue {kind}: {walls[kind]:.2f}s for {args.branches} candidates")
        local, dask = statistics.median(runs["local"]), statistics.median(runs["dask"])
        n = args.branches
        print(f"{'':34}{'local':>10}{'dask':>10}{'dask/local':>12}")
        print(f"{'gate run per candidate, median (s)':34}{local:10.3f}{dask:10.3f}{dask / local:11.2f}x")
        ql, qd = walls["local"] / n, walls["dask"] / n
        print(f"{'serial queue per candidate (s)':34}{ql:10.3f}{qd:10.3f}{qd / ql:11.2f}x")
        print(
            f"Dask overhead per candidate: {per:+.3f} s (median of {len(pairs)} paired runs; "
            f"queue: {qd - ql:+.3f} s); goal <= {GOAL} s: {'met' if per <= GOAL else 'NOT met'}"
        )
        if args.json:
            data = {"branches": n, "gate_runs": runs, "queue": walls, "overhead_per_candidate": per}
            args.json.write_text(json.dumps(data, indent=2))
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    main()
