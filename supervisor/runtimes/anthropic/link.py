"""The built-in agent's only way to the factory: `fac` requests over its worker's channel.

The agent runs in its worker's sandbox, where the store is out of reach. What it asks of the
factory (its own record, its inbox, its usage and events, the checks, submit, the andon cord) is a
request on the socket in its run directory, and the supervisor runs it as that socket's worker:
the same commands, allowlist and identity as `fac` typed in any other pane.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from supervisor import channel
from supervisor.errors import FacError


def failure(reply: channel.Reply) -> FacError:
    """The one-line error (and hint) a failed request printed, as the FacError it was."""
    lines = reply.err.strip().splitlines()
    message = next((ln.removeprefix("fac: error: ") for ln in lines if ln.startswith("fac: error: ")), "")
    hint = next((ln.strip().removeprefix("hint: ") for ln in lines if ln.strip().startswith("hint: ")), None)
    if not message:
        message = lines[-1] if lines else f"the request failed (exit {reply.code})"
    return FacError(message, hint=hint)


class Link:
    """Requests over one worker's channel, made from `cwd` (its worktree)."""

    def __init__(self, socket: Path, cwd: Path) -> None:
        self.socket = socket
        self.cwd = cwd

    def call(self, *argv: str) -> channel.Reply:
        """`fac ARGV` as the channel's worker; ChannelDown when the supervisor does not answer."""
        return channel.request(self.socket, list(argv), cwd=str(self.cwd))

    def ok(self, *argv: str) -> str:
        """`fac ARGV`'s output; its error as a FacError when it failed."""
        reply = self.call(*argv)
        if reply.code != 0:
            raise failure(reply)
        return reply.out

    def json(self, *argv: str) -> Any:
        """The JSON `fac ARGV` printed."""
        return json.loads(self.ok(*argv))
