"""The `anthropic` runtime: fac's built-in coding agent in the pane.

The agent is this package: loop (the tool-use loop), tools, transcript (what the pane shows),
conversation (kept so a restart resumes it) and client (settings, credentials, the API's shapes).

It needs the `anthropic` SDK and a key: ANTHROPIC_API_KEY or ANTHROPIC_AUTH_TOKEN. A base URL on
this machine (127.0.0.1, localhost: a local proxy, or the fake server of the tests and `fac demo`)
may go without one. Spawn keeps the spawner's ANTHROPIC_* variables in the worker's run directory
(mode 0600), because a tmux pane gets the tmux server's environment, not the caller's.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from urllib.parse import urlparse

from supervisor.errors import FacError
from supervisor.runtimes import Launch

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def base_url(launch: Launch) -> str | None:
    """ANTHROPIC_BASE_URL, else [agents] base_url (the environment wins, as in the SDK)."""
    if os.environ.get("ANTHROPIC_BASE_URL"):
        return os.environ["ANTHROPIC_BASE_URL"]
    if launch.root is None:
        return None
    from supervisor import config as configmod

    return configmod.load(launch.root).agents.base_url


def is_local(url: str | None) -> bool:
    return bool(url) and urlparse(url).hostname in LOCAL_HOSTS


class AnthropicRuntime:
    name = "anthropic"

    def check_available(self, launch: Launch) -> None:
        if importlib.util.find_spec("anthropic") is None:
            raise FacError(
                "the anthropic runtime needs the anthropic SDK, and it is not installed",
                hint=f"{sys.executable} -m pip install anthropic",
            )
        if os.environ.get("ANTHROPIC_API_KEY") or os.environ.get("ANTHROPIC_AUTH_TOKEN"):
            return
        url = base_url(launch)
        if is_local(url):
            return
        raise FacError(
            "the anthropic runtime needs an API key: "
            "neither ANTHROPIC_API_KEY nor ANTHROPIC_AUTH_TOKEN is set",
            hint="export ANTHROPIC_API_KEY=... (console.anthropic.com), or use --runtime claude or --cmd",
        )

    def prepare(self, launch: Launch) -> None:
        from supervisor.runtimes.anthropic.client import save_env

        save_env(launch.context_file.parent)

    def argv(self, launch: Launch) -> list[str]:
        return [sys.executable, "-m", "supervisor", "agent", "run", "--worker", launch.worker]
