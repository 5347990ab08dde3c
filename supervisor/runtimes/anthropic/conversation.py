"""The anthropic agent's conversation store: kept in the run directory so a restarted agent resumes it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONVERSATION_FILE = "conversation.json"  # in the run dir: a restarted agent resumes from it

Block = dict[str, Any]
Turn = dict[str, Any]  # {"role": "user" | "assistant", "content": [Block, ...]}


def text(t: str) -> Block:
    return {"type": "text", "text": t}


@dataclass
class Resumed:
    """Where the agent starts: the conversation so far, the next user message's blocks, its turn count."""

    convo: list[Turn]
    pending: list[Block]
    turns: int
    resumed: bool  # False: a fresh start on the task


class Conversation:
    """The whole conversation as one JSON file, replaced atomically after every change."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / CONVERSATION_FILE

    def load(self) -> list[Turn]:
        if not self.path.is_file():
            return []
        try:
            convo: list[Turn] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return []
        return convo

    def save(self, convo: list[Turn]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(convo), encoding="utf-8")
        tmp.replace(self.path)

    def resume(self, task: str | None) -> Resumed:
        """The saved conversation ready to go on, or a fresh one that starts with the task."""
        convo = self.load()
        if convo:
            turns = sum(1 for m in convo if m.get("role") == "assistant")
            if convo[-1].get("role") == "user":
                pending: list[Block] = convo.pop()["content"]
            else:  # it stopped mid-turn: its tool calls did not run (or their results are lost)
                pending = [
                    {
                        "type": "tool_result",
                        "tool_use_id": b["id"],
                        "is_error": True,
                        "content": "not run: fac restarted you before this tool call finished",
                    }
                    for b in convo[-1]["content"]
                    if b.get("type") == "tool_use"
                ]
            pending.append(text("(fac restarted you; your conversation so far is above. Continue.)"))
            return Resumed(convo, pending, turns, resumed=True)
        task = task or "(no task was given: ask what to do)"
        first = text(f"Your task: {task}\n\nStart by looking at the system under construction.")
        return Resumed([], [first], 0, resumed=False)
