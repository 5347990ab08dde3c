"""The benchmark scripts still run end to end and print their results (on tiny inputs).

No ratio or timing is asserted here (shared machines are noisy); only that each script completes,
measures what it says it measures, and prints its table. A script that rots (bench_supervisor once
enqueued a commit the factory could not see, once worktrees became agents' own repositories) fails
here, not the next time someone needs its numbers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(script: str, *args: str, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("FAC_ROOT", "FAC_WORKER", "TMUX")}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-4000:]
    return proc.stdout


def test_bench_spawn_measures_fac_spawn_against_raw_git_and_tmux() -> None:
    out = bench("bench_spawn.py", "--runs", "1", "--files", "20")
    assert "fac spawn worker --cmd 'sleep 60'" in out and "git worktree add + tmux new-window" in out
    assert "ratio" in out and "fac --version" in out
    assert "through the spawner: 1 of 1 runs" in out and "FAC_NO_SPAWNER=1" in out


def test_bench_supervisor_routes_red_verdicts_both_ways_and_measures_idle_cpu() -> None:
    out = bench("bench_supervisor.py", "--samples", "1", "--workers", "2", "--window", "1")
    assert "routing latency, read through the channel, over 1 red verdicts" in out
    # Pasted too, unless the agent read it through its channel first (then it is never pasted).
    assert "routing latency, pasted into the pane, over 1 red verdicts" in out or (
        "routing latency, pasted into the pane: no sample arrived" in out
    )
    assert "idle CPU of the supervisor with 2 workers" in out


def test_bench_queue_runs_a_red_batch_against_the_serial_queue() -> None:
    out = bench("bench_queue.py", "--scenarios", "B2", "--branches", "2")
    row = next(line for line in out.splitlines() if line.startswith("B2 "))
    assert "1/1 of 1" in row  # the one culprit blamed by both queues, nobody else


def test_bench_agent_times_the_built_in_agent_against_the_fake_api() -> None:
    out = bench("bench_agent.py", "--runs", "1")
    assert "total" in out


def test_bench_dask_compares_local_and_dask_gate_runs() -> None:
    pytest.importorskip("distributed")
    out = bench("bench_dask.py", "--branches", "2", "--repeat", "1")
    assert "Dask overhead per candidate" in out and "dask/local" in out
