"""A scripted stand-in for the `claude` CLI, for the claude runtime's tests without Claude Code.

It does what Claude Code does with fac's hooks, in the same order and with the same JSON: runs the
SessionStart hook (source "startup", or "resume" under --resume), takes its argv's last word as the
first prompt (UserPromptSubmit), "works", runs the Stop hook (a block decision makes it work on,
with `stop_hook_active`), and then sits at its prompt reading what is typed, bracketed pastes
included, each Enter a new prompt. A test steers it through files in its control directory
(`claude-control` in the worker's run directory `.fac/runs/<worker>`, which its sandbox lets it write):
`hold` keeps it mid-turn while it exists, `hold-start` keeps it starting (before SessionStart),
and `dialog` makes it open a permission prompt in the middle of a turn (Notification hook,
`permission_prompt`), which the next typed line answers. It writes what happened, in order, to
`log.jsonl` there: hooks with their input and output, prompts, dialog answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCRIPT = r"""#!/usr/bin/env python3
import json, os, pathlib, select, subprocess, sys, time

# Its control directory: in the worker's run directory (beside its channel), which its sandbox may write.
here = pathlib.Path(os.environ["FAC_SOCKET"]).parent / "claude-control"
here.mkdir(parents=True, exist_ok=True)
argv = sys.argv[1:]
hooks = json.loads(pathlib.Path(".claude/settings.local.json").read_text())["hooks"]
resumed = "--resume" in argv
session = argv[argv.index("--resume") + 1] if resumed else "sess-1234"

def log(**entry):
    with open(here / "log.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")

def put(name, text):  # whole or not at all: a test reads the file as soon as it exists
    tmp = pathlib.Path(name + ".tmp")
    tmp.write_text(text)
    tmp.rename(name)

def hook(name, **fields):
    payload = {"session_id": session, "hook_event_name": name, "transcript_path": "/dev/null",
               "cwd": os.getcwd(), **fields}
    cmd = hooks[name][0]["hooks"][0]["command"]
    out = subprocess.run(cmd, shell=True, input=json.dumps(payload), capture_output=True, text=True).stdout
    log(hook=name, input=payload, stdout=out)
    try:
        return json.loads(out) if out.strip() else {}
    except ValueError:
        return {"text": out}

def read_prompt():
    # One prompt: typed text up to Enter; a bracketed paste may span lines.
    text, pasting = "", False
    while True:
        line = sys.stdin.readline()
        if not line:
            sys.exit(0)
        text += line
        if "\x1b[200~" in line:
            pasting = True
        if "\x1b[201~" in line:
            pasting = False
        if not pasting:
            return text.replace("\x1b[200~", "").replace("\x1b[201~", "").rstrip("\n")

def work():
    while (here / "hold").exists():
        if (here / "dialog").exists():
            hook("Notification", message="Claude needs your permission to use Bash",
                 notification_type="permission_prompt")
            print("Do you want to proceed?  1. Yes  2. No", flush=True)
            log(dialog_answer=read_prompt())
            (here / "dialog").unlink()
        time.sleep(0.05)

def turn(prompt):
    log(prompt=prompt)
    hook("UserPromptSubmit", prompt=prompt)
    active = False
    while True:
        work()
        out = hook("Stop", stop_hook_active=active)
        if out.get("decision") != "block":
            return
        log(continued=out.get("reason", ""))
        active = True

put("claude-argv.json", json.dumps(argv))
put("claude-env.json", json.dumps(dict(os.environ)))
while (here / "hold-start").exists():  # a slow start: its input is not ready yet
    time.sleep(0.05)
start = hook("SessionStart", source="resume" if resumed else "startup")
put("session-start-output.txt", json.dumps(start))
turn(argv[-1])
sys.stdout.write("\x1b[?2004h")  # ask for bracketed paste, as Claude Code's prompt box does
while True:
    print("> ", end="", flush=True)
    turn(read_prompt())
"""


def install(bindir: Path) -> Path:
    """Write the stand-in as `claude` in `bindir`; returns its path."""
    bindir.mkdir(parents=True, exist_ok=True)
    exe = bindir / "claude"
    exe.write_text(SCRIPT)
    exe.chmod(0o755)
    return exe


class Control:
    """One stand-in's control directory, in its worker's run directory `run_dir` (made before the
    worker is spawned, so a test can hold it from its first moment): steer it, read what it did."""

    def __init__(self, run_dir: Path) -> None:
        self.dir = run_dir / "claude-control"
        self.dir.mkdir(parents=True, exist_ok=True)

    def hold(self) -> None:
        (self.dir / "hold").touch()

    def release(self) -> None:
        (self.dir / "hold").unlink(missing_ok=True)

    def hold_start(self) -> None:
        (self.dir / "hold-start").touch()

    def release_start(self) -> None:
        (self.dir / "hold-start").unlink(missing_ok=True)

    def open_dialog(self) -> None:
        (self.dir / "dialog").touch()

    def dialog_open(self) -> bool:
        return (self.dir / "dialog").exists() and any("Notification" == e.get("hook") for e in self.log())

    def log(self) -> list[dict[str, Any]]:
        path = self.dir / "log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def hooks(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.log() if e.get("hook") == name]

    def seen(self, text: str) -> int:
        """How many times `text` reached the model: in a prompt, or in a hook's output that Claude
        gives the model (SessionStart and UserPromptSubmit context, a Stop hook's block reason)."""
        n = 0
        for e in self.log():
            if "prompt" in e:
                n += e["prompt"].count(text)
            elif e.get("hook") in ("SessionStart", "UserPromptSubmit", "Stop"):
                n += e["stdout"].count(text)
        return n
