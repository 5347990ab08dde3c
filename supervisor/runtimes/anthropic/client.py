"""The anthropic agent's model client: its settings, its credentials, and the Messages API's shapes.

The `anthropic` SDK is imported only when a client is made, so nothing else pays for it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.factory import Factory

DEFAULT_MODEL = "claude-sonnet-4-6"
MAX_OUTPUT_TOKENS = 8192  # per model call
RETRIES = 6  # attempts per model call for 429, 5xx and connection errors
BACKOFF_MAX = 60.0
ENV_FILE = "agent.env"  # in the worker's run dir, 0600: the ANTHROPIC_* of whoever spawned it
KEY_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
ENV_VARS = (*KEY_VARS, "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL")


@dataclass(frozen=True)
class Settings:
    model: str
    base_url: str | None
    api_key: str | None
    auth_token: str | None
    max_tokens_per_worker: int
    max_turns: int
    price_in: float
    price_out: float
    run_timeout: float


def agent_env(fac: Factory, worker: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The ANTHROPIC_* variables the agent uses: its own environment, overridden by what spawn saved."""
    env = dict(os.environ if env is None else env)
    saved = fac.run_dir(worker) / ENV_FILE
    if saved.is_file():
        data = json.loads(saved.read_text(encoding="utf-8"))
        if any(k in data for k in KEY_VARS):
            for k in KEY_VARS:  # the spawner's credentials replace the pane's as a pair
                env.pop(k, None)
        env.update({k: v for k, v in data.items() if k in ENV_VARS and v})
    return env


def save_env(run_dir: Path, env: dict[str, str] | None = None) -> Path | None:
    """Keep the spawner's ANTHROPIC_* for the pane (tmux would hand it the server's environment)."""
    env = dict(os.environ if env is None else env)
    data = {k: env[k] for k in ENV_VARS if env.get(k)}
    if not data:
        return None
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / ENV_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f)
    os.chmod(path, 0o600)
    return path


def settings(fac: Factory, env: dict[str, str]) -> Settings:
    """The agent's settings as factory.toml and its environment say now."""
    from supervisor import config as configmod

    cfg = configmod.load(fac.root).agents  # fresh: a human may have raised the budget meanwhile
    return Settings(
        model=env.get("ANTHROPIC_MODEL") or cfg.model or DEFAULT_MODEL,
        base_url=env.get("ANTHROPIC_BASE_URL") or cfg.base_url,
        api_key=env.get("ANTHROPIC_API_KEY") or None,
        auth_token=None if env.get("ANTHROPIC_API_KEY") else (env.get("ANTHROPIC_AUTH_TOKEN") or None),
        max_tokens_per_worker=cfg.max_tokens_per_worker,
        max_turns=cfg.max_turns,
        price_in=cfg.price_in,
        price_out=cfg.price_out,
        run_timeout=cfg.run_timeout,
    )


def make_client(s: Settings) -> Any:
    import anthropic

    kwargs: dict[str, Any] = {"max_retries": 0, "timeout": 600.0}  # the agent retries itself, visibly
    if s.base_url:
        kwargs["base_url"] = s.base_url
    if s.api_key:
        kwargs["api_key"] = s.api_key
    elif s.auth_token:
        kwargs["auth_token"] = s.auth_token
    else:
        kwargs["api_key"] = "fac-no-key"  # a keyless local endpoint (check_available allowed it)
    return anthropic.Anthropic(**kwargs)


def block(b: Any) -> dict[str, Any]:
    """An SDK content block as the plain dict the next request carries back."""
    if b.type == "text":
        return {"type": "text", "text": b.text}
    if b.type == "tool_use":
        return {"type": "tool_use", "id": b.id, "name": b.name, "input": dict(b.input or {})}
    dumped: dict[str, Any] = b.model_dump(exclude_none=True)
    return dumped


def with_cache_mark(convo: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The conversation with one cache breakpoint on its last block: each turn re-reads the rest cheaply."""
    msgs = list(convo)
    last = dict(msgs[-1])
    blocks = [dict(b) for b in last["content"]]
    blocks[-1]["cache_control"] = {"type": "ephemeral"}
    last["content"] = blocks
    msgs[-1] = last
    return msgs


def api_message(e: Any) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return f"{err.get('type', 'error')}: {err['message']}"
    return str(getattr(e, "message", e))


def retry_after(e: Any) -> float | None:
    try:
        value = e.response.headers.get("retry-after")
        return max(0.0, float(value)) if value is not None else None
    except (AttributeError, TypeError, ValueError):
        return None
