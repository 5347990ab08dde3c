"""`fac demo`: the whole line, offline, in a minute: five agents, the queue, real tmux and git.

alice's change merges; bob's is red, the queue routes the failing test to bob, who reads his inbox,
fixes it and merges; carol and dave edit the same line: one merges, the other gets the conflict with
its path, merges main and merges too. erin is fac's built-in agent (the anthropic runtime): the real
`anthropic` client talks to the bundled fake Messages API on 127.0.0.1, which plays erin's model.
Everything runs in a temp directory on a private tmux socket.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import factory as factorymod
from supervisor import repo
from supervisor.factory import Factory

# Each agent: what it does first, and how it reacts to a red verdict (None: it cannot fix reds).
AGENT_LOOP = r"""
say() { printf '\n\033[1m>>> %s: %s\033[0m\n' "$FAC_WORKER" "$*"; }
wait_verdict() {
  while true; do
    msg=$(fac inbox --wait 240) || { say "no verdict within 240 s; giving up"; exit 1; }
    printf '%s\n' "$msg"
    # By sender and kind (the header fac writes), never by the text: a peer can write any text.
    case "$msg" in
      *" from merge-queue (merged) "*) say "merged into main. Done."; exit 0 ;;
      *" from merge-queue (red) "*) say "the gate is red; reading the feedback and fixing"; fix ;;
      *" from merge-queue (conflict) "*) say "conflict with main; merging main (keeping my line)"
                          git merge -q -X ours -m "Merge main into $FAC_BRANCH" main && fac submit ;;
    esac
  done
}
"""

ALICE = r'''
say "task: $FAC_TASK"
cat > system-under-construction/textstats/chars.py <<'PY'
"""Character statistics."""


def char_count(text: str, *, spaces: bool = False) -> int:
    """Characters in `text`; whitespace counts only with spaces=True."""
    return len(text) if spaces else sum(1 for c in text if not c.isspace())
PY
cat > system-under-construction/tests/test_chars.py <<'PY'
from textstats.chars import char_count


def test_char_count_skips_whitespace_by_default():
    assert char_count("a b\nc") == 3
    assert char_count("a b", spaces=True) == 3
PY
say "running the fast checks"; fac check
git add -A && git commit -qm "Add char_count" && fac submit
fix() { say "I did not expect red"; exit 1; }
wait_verdict
'''

BOB = r'''
say "task: $FAC_TASK"
cat > system-under-construction/textstats/averages.py <<'PY'
"""Averages over words."""

from textstats import words


def average_word_length(text: str) -> float:
    ws = words(text)
    if not ws:
        return 0.0
    total = sum(len(w) for w in ws)
    return round(total / len(ws))
PY
cat > system-under-construction/tests/test_averages.py <<'PY'
from textstats.averages import average_word_length


def test_average_word_length_is_exact():
    assert average_word_length("ab abcde") == 3.5
    assert average_word_length("") == 0.0
PY
say "in a hurry: committing without running the checks"
git add -A && git commit -qm "Add average_word_length" && fac submit
fix() {
  sed -i 's|return round(total / len(ws))|return total / len(ws)|' \
    system-under-construction/textstats/averages.py
  say "fixed: no rounding; checking before I resubmit"
  fac check && git commit -qam "average_word_length: do not round" && fac submit
}
wait_verdict
'''

CAROL = r'''
say "task: $FAC_TASK"
sed -i '1s|.*|"""textstats: small statistics over plain text: words, lines and frequencies."""|' \
  system-under-construction/textstats/__init__.py
git commit -qam "Say what textstats counts" && fac submit
fix() { say "I did not expect red"; exit 1; }
wait_verdict
'''
DAVE = r'''
say "task: $FAC_TASK"
sed -i '1s|.*|"""textstats: dependency-free statistics over plain text."""|' \
  system-under-construction/textstats/__init__.py
git commit -qam "Say textstats has no dependencies" && fac submit
fix() { say "I did not expect red"; exit 1; }
wait_verdict
'''

AGENTS = [
    ("alice", "Add char_count with a test", ALICE),
    ("bob", "Add average_word_length with a test", BOB),
    ("carol", "Improve the package docstring", CAROL),
    ("dave", "Improve the package docstring", DAVE),
]

# erin runs the anthropic runtime; the fake Messages API plays her model's turns, in this order.
ERIN_TASK = "Add longest_word with a test"
SUT = "system-under-construction"
LONGEST = '''"""The longest word."""

from textstats import words


def longest_word(text: str) -> str:
    """The longest word of `text` (the first one on a tie), or "" when it has none."""
    return max(words(text), key=len, default="")
'''
TEST_LONGEST = """from textstats.longest import longest_word


def test_longest_word_takes_the_first_of_the_longest():
    assert longest_word("a tiny cat and a small dog") == "small"
    assert longest_word("") == ""
"""


def erin_turns() -> list[dict[str, Any]]:
    from supervisor.fake_anthropic import text, tool, turn

    return [
        turn(text("I'll see what textstats has first."), tool("list_dir", path=f"{SUT}/textstats")),
        turn(tool("read_file", path=f"{SUT}/textstats/__init__.py")),
        turn(
            text("words() gives lower-cased words; longest_word builds on it. Writing it with a test."),
            tool("write_file", path=f"{SUT}/textstats/longest.py", content=LONGEST),
            tool("write_file", path=f"{SUT}/tests/test_longest.py", content=TEST_LONGEST),
        ),
        turn(text("Running the fast checks before I submit."), tool("check")),
        turn(text("Green. Submitting."), tool("submit", message="Add longest_word")),
    ]


@dataclass
class DemoResult:
    ok: bool
    root: Path
    socket: str
    session: str
    seconds: float
    workers: list[dict[str, Any]]
    main_log: str
    stats: dict[str, Any]
    problems: list[str]
    flow: dict[str, Any] = field(default_factory=dict)  # `fac report`: flow metrics and tokens

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "root": str(self.root),
            "socket": self.socket,
            "session": self.session,
            "seconds": round(self.seconds, 1),
            "workers": self.workers,
            "main_log": self.main_log,
            "stats": self.stats,
            "problems": self.problems,
            "flow": self.flow,
        }


def run(
    directory: Path | None = None,
    *,
    keep: bool = False,
    timeout: float = 240.0,
    say: Callable[[str], None] = print,
) -> DemoResult:
    from supervisor import session, workers
    from supervisor.factory import Factory

    start = time.monotonic()
    base = directory or Path(tempfile.mkdtemp(prefix="fac-demo-"))
    root = base / "textstats-factory"
    sock = f"fac-demo-{os.getpid()}"
    os.environ["FAC_TMUX_SOCKET"] = sock
    os.environ.pop("FAC_ROOT", None)
    say(f"fac demo: a factory in {root}, tmux socket {sock}")
    factorymod.init(root, sample=True)
    fac = Factory(root)
    scripts = fac.fac_dir / "demo"
    scripts.mkdir(parents=True, exist_ok=True)
    fake = _start_fake_api(scripts)  # before `up`, so every pane's environment points at it
    say(f"  fake Anthropic API on {os.environ['ANTHROPIC_BASE_URL']} (plays erin's model)")
    try:
        session.up(fac)
        say(f"  up: windows supervisor and merge-queue in session {fac.session}")
        for name, task, body in AGENTS:
            # In the worker's own run directory: the one place under .fac/ its sandbox shows it.
            path = fac.run_dir(name) / "agent.sh"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("set -u\n" + AGENT_LOOP + body, encoding="utf-8")
            workers.spawn(
                fac,
                "worker",
                name=name,
                task=task,
                command=f"bash --norc --noprofile {shlex.quote(str(path))}",
            )
            say(f"  spawned {name}: {task}")
            time.sleep(0.3)  # submissions arrive in a readable order
        workers.spawn(fac, "worker", name="erin", task=ERIN_TASK, runtime="anthropic")
        say(f"  spawned erin (anthropic runtime, fac's built-in agent): {ERIN_TASK}")
        say("  watching the event log (every line below is a row of `fac log`):")
        problems = _follow(fac, timeout, say)
    finally:
        fake.terminate()
        fake.wait(timeout=10)
    result = _summary(fac, sock, time.monotonic() - start, problems)
    if not keep:
        _cleanup(fac, sock, base if directory is None else None)
    return result


def _start_fake_api(scripts: Path) -> subprocess.Popen[bytes]:
    """The bundled fake Messages API as a process on 127.0.0.1; erin's panes reach it with a dummy key."""
    import json

    from supervisor.fake_anthropic import DEFAULT_KEY

    script, port_file = scripts / "erin-model.json", scripts / "fake-anthropic.port"
    script.write_text(json.dumps({"key": DEFAULT_KEY, "turns": erin_turns()}, indent=1), encoding="utf-8")
    log = open(scripts / "fake-anthropic.log", "wb")  # noqa: SIM115  (the child keeps it)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor.fake_anthropic",
            "--script",
            str(script),
            "--port-file",
            str(port_file),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    deadline = time.monotonic() + 30
    while not port_file.is_file():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the fake Anthropic API did not start; see {scripts / 'fake-anthropic.log'}")
        time.sleep(0.05)
    os.environ["ANTHROPIC_BASE_URL"] = f"http://127.0.0.1:{port_file.read_text().strip()}"
    os.environ["ANTHROPIC_API_KEY"] = DEFAULT_KEY  # never a real key: the demo talks only to the fake
    os.environ.pop("ANTHROPIC_AUTH_TOKEN", None)
    os.environ.pop("ANTHROPIC_MODEL", None)
    return proc


def _follow(fac: Factory, timeout: float, say: Callable[[str], None]) -> list[str]:
    """Print the story from the event log until every agent has finished (or time runs out)."""
    deadline = time.monotonic() + timeout
    last = 0
    names = [a[0] for a in AGENTS] + ["erin"]
    while True:
        for ev in fac.store.events(after=last):
            last = ev.id
            line = _story(ev)
            if line:
                say(f"  {time.strftime('%H:%M:%S', time.localtime(ev.ts))} {line}")
        panes = {p.window_name: p for p in fac.panes()}
        finished = [n for n in names if n in panes and panes[n].settled]
        if len(finished) == len(names):
            break
        if time.monotonic() > deadline:
            return [f"timed out after {timeout:g}s; still running: {', '.join(set(names) - set(finished))}"]
        time.sleep(0.25)
    return [f"{n} exited {panes[n].dead_status}" for n in names if panes[n].dead_status != 0]


def _story(ev: Any) -> str | None:
    p = ev.payload
    if ev.kind == "submitted":
        return f"{ev.worker} submitted {p['sha'][:10]}"
    if ev.kind == "candidate":
        n = len(p.get("entries", []))
        verdict = "green" if p.get("ok") else f"RED ({', '.join(p.get('failed', []))})"
        return f"queue tested main + {n} branch(es) as {p['sha'][:10]}: {verdict}"
    if ev.kind == "merged":
        return f"{ev.worker}: MERGED, main is now {p['main'][:10]}"
    if ev.kind == "red":
        return f"{ev.worker}: RED on {', '.join(p.get('failed', []))}; routed to {ev.worker}'s inbox and pane"
    if ev.kind == "conflict":
        return f"{ev.worker}: CONFLICT in {', '.join(p.get('paths', []))}; routed to {ev.worker}"
    if ev.kind == "agent-turn":
        return (
            f"{ev.worker}: model turn {p['turn']} through the anthropic client "
            f"({p['tokens_in'] + p['tokens_out']:,} tokens, {p['stop_reason']})"
        )
    if ev.kind == "flaky":
        return f"{ev.worker}: a check failed once and passed on retry (flaky)"
    return None


def _summary(fac: Factory, sock: str, seconds: float, problems: list[str]) -> DemoResult:
    from supervisor import workers

    views = [v.as_dict() for v in workers.views(fac)]
    entries = fac.store.queue()
    by_worker: dict[str, list[str]] = {}
    for e in entries:
        by_worker.setdefault(e.worker, []).append(e.state)
    for v in views:
        v["submissions"] = by_worker.get(v["name"], [])
    log = repo.git(fac.root, "log", "--oneline", "--graph", "--decorate=no", fac.main)
    stats = {
        "check_runs": fac.store.count_runs(cached=False),
        "cache_hits": fac.store.count_runs(cached=True),
        "merged": sum(1 for e in entries if e.state == "merged"),
        "red": sum(1 for e in entries if e.state == "red"),
        "conflict": sum(1 for e in entries if e.state == "conflict"),
        "tokens": sum(v["tokens"] for v in views),
    }
    # An agent ended well when its last submission merged; the supervisor then marks its exited
    # process done.
    ended = {v["name"]: (v["submissions"][-1:] or ["nothing submitted"])[0] for v in views}
    if any(s != "merged" for s in ended.values()) or any(v["state"] not in ("merged", "done") for v in views):
        problems.append(
            "not every agent ended merged: "
            + ", ".join(f"{v['name']}={v['state']} ({ended[v['name']]})" for v in views)
        )
    if ended.get("erin") != "merged":
        problems.append("erin (the anthropic runtime) should have merged")
    if not any(v["name"] == "erin" and v["tokens"] > 0 for v in views):
        problems.append("erin's tokens should be recorded in the store")
    if "red" not in by_worker.get("bob", []):
        problems.append("bob's first submission should have been red")
    if not any("conflict" in by_worker.get(n, []) for n in ("carol", "dave")):
        problems.append("carol or dave should have hit a conflict")
    from supervisor import report

    flow = report.build(fac)
    return DemoResult(not problems, fac.root, sock, fac.session, seconds, views, log, stats, problems, flow)


def _cleanup(fac: Factory, sock: str, tmpdir: Path | None) -> None:
    subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
    for _ in range(50):
        if subprocess.run(["tmux", "-L", sock, "list-sessions"], capture_output=True).returncode != 0:
            break
        time.sleep(0.1)
    fac.store.close()
    if tmpdir is not None:
        shutil.rmtree(tmpdir, ignore_errors=True)


def render(result: DemoResult, keep: bool) -> str:
    from supervisor.text import table

    lines = ["", "main after the demo:", *[f"  {line}" for line in result.main_log.splitlines()], ""]
    rows = [
        [w["name"], w["runtime"], w["state"], " -> ".join(w["submissions"]), f"{w['tokens']:,}", w["process"]]
        for w in result.workers
    ]
    lines.append(
        table(rows, ["AGENT", "RUNTIME", "STATE", "SUBMISSIONS (oldest first)", "TOKENS", "PROCESS"])
    )
    s = result.stats
    lines.append("")
    lines.append(
        f"{s['check_runs']} gate runs, {s['cache_hits']} answered from the cache, "
        f"{s['tokens']:,} model tokens (erin, against the bundled fake API), {result.seconds:.0f}s in all"
    )
    if result.flow:
        from supervisor import report

        lines += [
            "",
            "flow metrics (fac report):",
            *[f"  {line}".rstrip() for line in report.render(result.flow).splitlines()],
        ]
    if keep:
        lines += [
            "",
            "the factory is still running:",
            f"  tmux -L {result.socket} attach -t {result.session}"
            "     # windows: supervisor, merge-queue, agents",
            f"  cd {result.root} && FAC_TMUX_SOCKET={result.socket} fac status",
            f"  stop it: cd {result.root} && FAC_TMUX_SOCKET={result.socket} fac down",
        ]
    if result.problems:
        lines += ["", "demo FAILED:", *[f"  {p}" for p in result.problems]]
    else:
        lines += [
            "",
            "demo OK: green work merged, red work went back to its owner and came back fixed; erin's "
            "built-in agent merged through the real anthropic client.",
        ]
    return "\n".join(lines)


def main_entry(keep: bool, directory: Path | None, as_json: bool) -> int:
    import json

    say = (lambda _m: None) if as_json else (lambda m: (print(m), sys.stdout.flush()))
    result = run(directory, keep=keep, say=say)  # type: ignore[arg-type]
    if as_json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        print(render(result, keep))
    return 0 if result.ok else 1
