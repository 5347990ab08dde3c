#!/usr/bin/env python3
"""Benchmark the supervisor: routing latency and idle CPU.

1. Routing latency: from the merge queue's red verdict (the `red` event's timestamp) to the moment
   the text is visible in the owner's pane (capture-pane polled every 5 ms), two ways side by side:
   pasted by fac into the pane, and read by the agent itself with `fac inbox --wait` through its
   channel (the pane's FAC_SOCKET, served by a real `fac supervise`). Goal < 1 s for both.
2. Idle CPU: the supervisor (serving one channel socket per worker, drawing its dashboard) and the
   merge queue as `fac up` runs them, each in its tmux window, with 20 live workers and nothing
   happening; CPU time of each window's processes from /proc over a window. Goal < 1% of a core.

Everything runs on a private tmux socket in a temp dir; nothing touches the default tmux server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor import factory as factorymod  # noqa: E402
from supervisor import health, session, submission, workers  # noqa: E402
from supervisor.factory import Factory  # noqa: E402
from supervisor.queue import MergeQueue  # noqa: E402


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()


def capture(sock: str, target: str) -> str:
    return subprocess.run(
        ["tmux", "-L", sock, "capture-pane", "-p", "-J", "-t", target, "-S", "-200"],
        capture_output=True,
        text=True,
    ).stdout


# The owner's agent: reads each verdict through its channel, every line marked as read that way;
# a `cat` drains the terminal, where the pasted copies arrive (a full tty input queue drops them).
READER = "cat </dev/tty >/dev/null & while true; do fac inbox --wait 600 | sed 's/^/CHANNEL /'; done"


def routing_latency(root: Path, sock: str, samples: int) -> dict[str, list[float]]:
    fac = Factory(root)
    workers.spawn(fac, "worker", name="owner", command=READER)
    env = {**os.environ, "FAC_ROOT": str(root)}
    argv = [sys.executable, "-m", "supervisor", "supervise", "--no-dashboard"]
    supervisor = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL)
    channel = workers.socket_path(fac, "owner")
    deadline = time.monotonic() + 30
    while not channel.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the reader's first `fac inbox --wait` is connected and waiting
    try:
        return _latency_samples(fac, root, sock, samples)
    finally:
        supervisor.terminate()
        supervisor.wait(10)


def _latency_samples(fac: Factory, root: Path, sock: str, samples: int) -> dict[str, list[float]]:
    wt = root / ".fac" / "worktrees" / "owner"
    pane = fac.store.worker("owner").pane_id
    lat: dict[str, list[float]] = {"pasted": [], "channel": []}
    for i in range(samples):
        test = wt / "system-under-construction" / "tests" / f"test_red_{i}.py"
        test.write_text(f"def test_red_{i}():\n    assert {i} == -1\n")
        git(wt, "add", "-A")
        git(wt, "commit", "-qm", f"red {i}")
        submission.submit(fac, "owner")  # as `fac submit`: fetched from the agent's own repository
        seen: dict[str, float] = {}
        needle = f"test_red_{i}.py::test_red_{i}"
        stop = threading.Event()

        def poll(needle: str = needle, stop: threading.Event = stop, seen: dict[str, float] = seen) -> None:
            while not stop.is_set() and len(seen) < 2:
                lines = capture(sock, pane).splitlines()
                now = time.time()
                for how, hit in (
                    ("pasted", any(needle in x and not x.startswith("CHANNEL ") for x in lines)),
                    ("channel", any(needle in x and x.startswith("CHANNEL ") for x in lines)),
                ):
                    if hit:
                        seen.setdefault(how, now)
                time.sleep(0.005)

        t = threading.Thread(target=poll)
        t.start()
        MergeQueue(fac, retries=0).run(once=True)
        t.join(10)
        stop.set()
        reds = [e for e in fac.store.events(worker="owner") if e.kind == "red"]
        if len(reds) != i + 1:
            states = [e.state for e in fac.store.queue()]
            raise SystemExit(f"bench_supervisor: sample {i + 1} was not judged red (queue states: {states})")
        red = reds[-1]
        for how, ts in seen.items():
            lat[how].append(ts - red.ts)
        git(wt, "rm", "-q", str(test.relative_to(wt)))
        git(wt, "commit", "-qm", f"drop red {i}")
        shown = ", ".join(f"{how} {(ts - red.ts) * 1000:.0f} ms" for how, ts in sorted(seen.items()))
        print(f"  sample {i + 1}/{samples}: {shown or 'lost'}", file=sys.stderr)
    return lat


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and every live process below it."""
    total = 0.0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            total += cpu_seconds(p)
            children = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:  # it ended meanwhile
            continue
        todo += [int(c) for c in children]
    return total


def idle_cpu(root: Path, sock: str, n_workers: int, window: float) -> dict[str, float]:
    """The supervisor and the merge queue as `fac up` runs them: each in its tmux window, the
    supervisor drawing its dashboard, with `n_workers` live workers and nothing happening."""
    fac = Factory(root)
    for i in range(n_workers):
        workers.spawn(fac, "worker", name=f"idle{i:02d}", command="sleep 3600")
    session.up(fac)
    time.sleep(3.0)  # start-up (imports, first reconcile) is not idle time
    served = sum(1 for i in range(n_workers) if workers.socket_path(fac, f"idle{i:02d}").exists())
    print(f"  {served} channel sockets served", file=sys.stderr)
    pids = {}
    for name in (health.SUPERVISOR_WINDOW, health.QUEUE_WINDOW):
        out = subprocess.run(
            ["tmux", "-L", sock, "list-panes", "-t", f"={fac.session}:{name}", "-F", "#{pane_pid}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        pids[name] = int(out[0])
    start = {k: tree_cpu_seconds(pid) for k, pid in pids.items()}
    t0 = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - t0
    out = {k: 100.0 * (tree_cpu_seconds(pid) - start[k]) / elapsed for k, pid in pids.items()}
    fac.store.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=10, help="routing latency samples")
    ap.add_argument("--workers", type=int, default=20, help="live workers during the idle measurement")
    ap.add_argument("--window", type=float, default=30.0, help="seconds of idle measured")
    args = ap.parse_args()
    sock = f"fac-bench-sup-{uuid.uuid4().hex[:8]}"
    os.environ["FAC_TMUX_SOCKET"] = sock
    for var in ("FAC_ROOT", "FAC_WORKER", "TMUX"):
        os.environ.pop(var, None)
    os.environ.setdefault("GIT_AUTHOR_NAME", "bench")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "bench@fac.invalid")
    os.environ.setdefault("GIT_COMMITTER_NAME", "bench")
    os.environ.setdefault("GIT_COMMITTER_EMAIL", "bench@fac.invalid")
    with tempfile.TemporaryDirectory(prefix="fac-bench-sup-") as tmp:
        try:
            print("routing latency (red verdict -> text visible in the owner's pane):", file=sys.stderr)
            root = factorymod.init(Path(tmp) / "latency", sample=True).root
            lat = routing_latency(root, sock, args.samples)
            subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
            time.sleep(0.3)
            print(f"idle CPU with {args.workers} workers over {args.window:g}s:", file=sys.stderr)
            root2 = factorymod.init(Path(tmp) / "idle", sample=True).root
            cpu = idle_cpu(root2, sock, args.workers, args.window)
        finally:
            subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
    print()
    for how, what in (("pasted", "pasted into the pane"), ("channel", "read through the channel")):
        got = lat[how]
        if not got:
            # A message the agent read through its channel first is never pasted (nothing is typed
            # into a pane after its receipt): with one sample, the channel may win every race.
            why = f" (all {len(lat['channel'])} read through the channel first)" if how == "pasted" else ""
            print(f"routing latency, {what}: no sample arrived{why}")
            continue
        skipped = len(lat["channel"]) - len(got) if how == "pasted" else 0
        note = f"; {skipped} not pasted: read through the channel first" if skipped > 0 else ""
        print(
            f"routing latency, {what}, over {len(got)} red verdicts: median "
            f"{statistics.median(got) * 1000:.0f} ms, max {max(got) * 1000:.0f} ms   (goal < 1000 ms){note}"
        )
    for name, pct in cpu.items():
        print(f"idle CPU of the {name} with {args.workers} workers: {pct:.2f}% of a core   (goal < 1%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
