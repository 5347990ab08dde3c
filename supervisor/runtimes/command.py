"""The `command` runtime: any command line in the pane (scripted agents, tests, `fac demo`)."""

from __future__ import annotations

from supervisor.errors import FacError
from supervisor.runtimes import Launch


class CommandRuntime:
    name = "command"

    def check_available(self, launch: Launch) -> None:
        if not launch.command or not launch.command.strip():
            raise FacError(
                "the command runtime needs a command",
                hint='pass --cmd "bash ./agent.sh" (the command runs in the worker\'s worktree)',
            )

    def argv(self, launch: Launch) -> list[str]:
        # The command is the human's own command line, run as if typed in the pane; bash without rc
        # files so a slow ~/.bashrc cannot delay or change the agent.
        assert launch.command is not None
        return ["bash", "--norc", "--noprofile", "-c", launch.command]
