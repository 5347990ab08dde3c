#!/usr/bin/env python3
"""Benchmark one full loop of the anthropic runtime against the fake Messages API.

A real worker (`fac spawn worker --runtime anthropic`, a real tmux pane on a private socket) whose
model is scripted by `supervisor.fake_anthropic` on 127.0.0.1: list, read, write a function and its
test, check, submit; the supervisor (the agent's channel: its loop runs sandboxed and speaks only
through it) runs in a thread, and the merge queue in this process as soon as the branch is queued. Phases
come from the event log; the end is the pane's exit after `[fac] MERGED`.

    .venv/bin/python scripts/bench_agent.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
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
from supervisor import workers  # noqa: E402
from supervisor.daemon import Supervisor  # noqa: E402
from supervisor.factory import Factory  # noqa: E402
from supervisor.fake_anthropic import DEFAULT_KEY, FakeAnthropic, text, tool, turn  # noqa: E402
from supervisor.queue import MergeQueue  # noqa: E402

SUT = "system-under-construction"
CODE = (
    "from textstats import words\n\n\ndef unique_words(text: str) -> int:\n    return len(set(words(text)))\n"
)
TEST = (
    "from textstats.unique import unique_words\n\n\n"
    'def test_unique_words():\n    assert unique_words("a b A") == 2\n'
)


def turns() -> list[dict]:
    return [
        turn(text("Looking around."), tool("list_dir", path=f"{SUT}/textstats")),
        turn(tool("read_file", path=f"{SUT}/textstats/__init__.py")),
        turn(
            tool("write_file", path=f"{SUT}/textstats/unique.py", content=CODE),
            tool("write_file", path=f"{SUT}/tests/test_unique.py", content=TEST),
        ),
        turn(tool("check")),
        turn(tool("submit", message="Add unique_words")),
    ]


def one_run(base: Path, sock: str) -> dict[str, float]:
    root = factorymod.init(base / f"f{uuid.uuid4().hex[:6]}", sample=True).root
    fac = Factory(root)
    stop = threading.Event()
    supervisor = Supervisor(Factory(root))
    sup = threading.Thread(target=supervisor.run, kwargs={"should_stop": stop.is_set})
    sup.start()
    try:
        return _timed(fac, sock)
    finally:
        stop.set()
        supervisor.wake.set()
        sup.join(30)


def _timed(fac: Factory, sock: str) -> dict[str, float]:
    with FakeAnthropic(turns()) as fake:
        os.environ.update(ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_API_KEY=DEFAULT_KEY)
        t0 = time.time()
        res = workers.spawn(fac, "worker", name="b1", task="Add unique_words", runtime="anthropic")
        while not fac.store.queue(("queued",)):
            time.sleep(0.02)
        MergeQueue(fac).run(once=True)
        while True:
            dead = subprocess.run(
                ["tmux", "-L", sock, "display-message", "-p", "-t", res["pane"], "#{pane_dead}"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            if dead == "1":
                break
            time.sleep(0.02)
        t_end = time.time()
    ev = {}
    for e in fac.store.events(worker="b1"):
        ev.setdefault(e.kind, []).append(e.ts)
    turns_at = ev["agent-turn"]
    fac.store.close()
    return {
        "spawn -> first model answer": turns_at[0] - t0,
        "write (model turn 3)": turns_at[2] - t0,
        "check (turn 4 -> turn 5)": turns_at[4] - turns_at[3],
        "submitted": ev["submitted"][0] - t0,
        "queue: submitted -> merged": ev["merged"][0] - ev["submitted"][0],
        "merged -> agent exited": t_end - ev["merged"][0],
        "total": t_end - t0,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    sock = f"fac-bench-agent-{os.getpid()}"
    os.environ["FAC_TMUX_SOCKET"] = sock
    base = Path(tempfile.mkdtemp(prefix="fac-bench-agent-"))
    results = []
    try:
        for i in range(args.runs):
            r = one_run(base, sock)
            results.append(r)
            print(f"run {i + 1}: total {r['total']:.2f}s")
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    print("\nmedian of each phase (seconds from spawn unless noted):")
    for key in results[0]:
        print(f"  {key:32} {statistics.median(r[key] for r in results):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
