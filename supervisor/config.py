"""factory.toml: load, validate and write the factory's configuration.

Every key is declared once in `SCHEMA`; an unknown key, a wrong type or a bad value is reported
with the key's full name and what was expected, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from supervisor.errors import FacError
from supervisor.locate import CONFIG_NAME as CONFIG_NAME  # with the code that finds it

STAGES = ("inner", "gate")
CHECK_KINDS = ("deterministic", "judgment")


@dataclass(frozen=True)
class CheckDef:
    """One check: a command with a stage, a timeout and a kind."""

    name: str
    run: tuple[str, ...] | str  # a string is split with shlex, never given to a shell
    cwd: str = "."
    stage: tuple[str, ...] = STAGES
    timeout: float = 600.0
    kind: str = "deterministic"
    required: bool = True
    env: tuple[tuple[str, str], ...] = ()
    source: str = "factory.toml"


@dataclass(frozen=True)
class QueueConfig:
    parallel: int = field(default_factory=lambda: os.cpu_count() or 2)
    max_batch: int = 16
    retries: int = 1
    verify_main: bool = False
    approval_paths: tuple[str, ...] = ()  # a branch touching these waits for `fac approve`
    allow_no_checks: bool = False  # merge even while main has no gate check (nothing is tested)


@dataclass(frozen=True)
class SupervisorConfig:
    tick: float = 5.0  # seconds between reconcile passes when nothing happens
    max_workers: int = 4  # the WIP limit for pulling tasks
    auto_fix: bool = False  # spawn a fixer when main goes red
    fixer_command: str | None = None  # the fixer's command when its role uses the command runtime
    worker_command: str | None = None  # what a worker pulled for an approved delta runs (command runtime)
    restart_delays: tuple[float, ...] = (0.0, 5.0, 15.0, 60.0)
    crash_loop: int = 4  # this many crashes ...
    crash_window: float = 900.0  # ... within this many seconds: needs-human
    red_limit: int = 5  # red verdicts in a row before the andon cord is pulled
    redeliver: float = 30.0  # seconds before an unacknowledged message is pasted again
    max_deliveries: int = 5


@dataclass(frozen=True)
class AgentsConfig:
    """[agents]: the built-in anthropic runtime. The ANTHROPIC_* environment wins over these."""

    model: str | None = None  # default: $ANTHROPIC_MODEL, else agent.DEFAULT_MODEL
    base_url: str | None = None  # default: $ANTHROPIC_BASE_URL, else the SDK's
    max_tokens_per_worker: int = 1_000_000  # input + output; past it the agent stops and asks a human
    max_turns: int = 200  # model calls per worker before it asks a human
    price_in: float = 3.0  # USD per million input tokens (for the cost in `fac report`)
    price_out: float = 15.0  # USD per million output tokens
    run_timeout: float = 300.0  # seconds before the `run` tool kills a command


ExecutorKind = Literal["local", "dask"]


@dataclass(frozen=True)
class ExecutorConfig:
    """[executor]: where gate suites run: local subprocesses, or one task per candidate on a Dask cluster."""

    kind: ExecutorKind = "local"
    scheduler: str | None = None  # kind = "dask": the scheduler's address, tcp://HOST:8786
    # candidates under test at once (the queue's speculative pipeline; 1: one at a time)
    slots: int = field(default_factory=lambda: os.cpu_count() or 2)


@dataclass(frozen=True)
class SandboxConfig:
    """[sandbox]: the bubblewrap sandbox every agent's pane runs in."""

    agent_network: bool = True  # agents call their model; false for runtimes that need no network


@dataclass(frozen=True)
class Config:
    name: str
    main: str = "main"
    remote: str | None = None  # [factory] remote: the git remote whose main is the truth
    session: str = ""
    queue: QueueConfig = field(default_factory=QueueConfig)
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    checks: tuple[CheckDef, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    context_max_chars: int = 24_000  # [context] max_chars: the budget of an agent's context
    agents: AgentsConfig = field(default_factory=AgentsConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)


# --- validation helpers: each returns the converted value or raises ValueError(expected) ---


def _str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("a non-empty string")
    return v


def _int_min(lo: int) -> Callable[[Any], int]:
    def conv(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"an integer >= {lo}")
        return v

    return conv


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return v


def _positive_number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise ValueError("a number of seconds > 0")
    return float(v)


class Problem(ValueError):
    """A bad value whose whole message and hint the converter writes (not "expected X, got Y")."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


# What a shell would do but a check's `run` (split, never given to a shell) would pass on as
# arguments: `true && pytest` would run `true` with the arguments "&&" and "pytest", a false green.
SHELL_OPERATORS = ("&&", "||", ">>", "$(", "|", ";", ">", "<", "&", "`")
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def shell_operator(command: str) -> str | None:
    """The first shell operator outside quotes in `command` (`&&`, `|`, `$(`, ...), else None.

    Inside quotes an operator is a literal argument to the program (as in `bash -c 'a && b'`).
    """
    quote: str | None = None
    i = 0
    while i < len(command):
        ch = command[i]
        if quote is not None:
            if ch == quote:
                quote = None
            elif ch == "\\" and quote == '"':
                i += 1
        elif ch in "'\"":
            quote = ch
        elif ch == "\\":
            i += 1
        else:
            for op in SHELL_OPERATORS:
                if command.startswith(op, i):
                    return op
        i += 1
    return None


def shell_syntax(argv: list[str], command: str | None) -> str | None:
    """The shell syntax a check's command uses (an operator or a leading `VAR=x`), else None."""
    op = shell_operator(command) if command is not None else None
    if op is None and command is None:
        op = next((a for a in argv if a.strip() in SHELL_OPERATORS), None)
    if op is not None:
        return op
    if argv and _ASSIGNMENT.match(argv[0]):
        return argv[0]
    return None


def _shell_problem(syntax: str, command: str) -> Problem:
    if _ASSIGNMENT.match(syntax):
        var, _, value = syntax.partition("=")
        return Problem(
            f"`{syntax}` sets a variable only in a shell, and no shell runs a check's command",
            f'set it with env = {{ {var} = "{value}" }} in the check, or run a shell: '
            f"run = \"bash -c '...'\"",
        )
    example = command if "'" not in command and '"' not in command else "..."
    return Problem(
        f'shell syntax "{syntax}" in {command!r}: no shell runs a check\'s command '
        "(it is split like a shell would, then run directly)",
        f'run a shell explicitly: run = "bash -c \'{example}\'" (variables: env = {{ NAME = "value" }})',
    )


def _run(v: Any) -> tuple[str, ...] | str:
    if isinstance(v, str) and v.strip():
        try:
            argv = shlex.split(v)
        except ValueError as e:
            raise ValueError(f"a command that splits like a shell would ({e})") from None
        syntax = shell_syntax(argv, v)
        if syntax is not None:
            raise _shell_problem(syntax, v)
        return v
    if isinstance(v, list) and v and all(isinstance(x, str) for x in v):
        syntax = shell_syntax(list(v), None)
        if syntax is not None:
            raise _shell_problem(syntax, " ".join(v))
        return tuple(v)
    raise ValueError('a command: a string ("python -m pytest -q") or a list of strings')


def _stage(v: Any) -> tuple[str, ...]:
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or not items or any(x not in STAGES for x in items):
        raise ValueError('"inner", "gate" or a list of them, e.g. ["inner", "gate"]')
    return tuple(dict.fromkeys(items))


def _kind(v: Any) -> str:
    if v not in CHECK_KINDS:
        raise ValueError('"deterministic" or "judgment"')
    return str(v)


def _env(v: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(v, dict) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ValueError('a table of strings, e.g. { PYTHONHASHSEED = "0" }')
    return tuple(sorted(v.items()))


def _session(v: Any) -> str:
    s = _str(v)
    if ":" in s or "." in s:
        # tmux would create the session as "a_b" but never find it again by "a:b" or "a.b"
        raise ValueError("a tmux session name without ':' or '.'")
    return s


def _branch(v: Any) -> str:
    s = _str(v)
    if s.startswith("-") or " " in s or ".." in s:
        raise ValueError("a git branch name")
    return s


SCHEMA: dict[str, dict[str, Callable[[Any], Any]]] = {
    "factory": {"name": _str, "main": _branch, "remote": lambda v: _remote(v)},
    "tmux": {"session": _session},
    "queue": {
        "parallel": _int_min(1),
        "max_batch": _int_min(1),
        "retries": _int_min(0),
        "verify_main": _bool,
        "approval_paths": lambda v: _globs(v),
        "allow_no_checks": _bool,
    },
}


def _remote(v: Any) -> str:
    s = _str(v)
    if s.startswith("-") or any(c.isspace() for c in s):
        raise ValueError('the name of a git remote, e.g. "origin"')
    return s


def _executor_kind(v: Any) -> str:
    if v not in ("local", "dask"):
        raise ValueError('"local" or "dask"')
    return str(v)


def _scheduler(v: Any) -> str:
    if not isinstance(v, str) or not v.startswith(("tcp://", "tls://", "ws://", "wss://", "inproc://")):
        raise ValueError('a Dask scheduler address, e.g. "tcp://HOST:8786"')
    return v


def _globs(v: Any) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
        raise ValueError('a list of path globs, e.g. ["system-under-construction/migrations/**"]')
    return tuple(v)


def _delays(v: Any) -> tuple[float, ...]:
    if (
        not isinstance(v, list)
        or not v
        or any(isinstance(x, bool) or not isinstance(x, int | float) or x < 0 for x in v)
    ):
        raise ValueError("a non-empty list of seconds >= 0, e.g. [0, 5, 15, 60]")
    return tuple(float(x) for x in v)


def _seconds(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ValueError("a number of seconds >= 0")
    return float(v)


SCHEMA["supervisor"] = {
    "tick": _positive_number,
    "max_workers": _int_min(1),
    "auto_fix": _bool,
    "fixer_command": _str,
    "worker_command": _str,
    "restart_delays": _delays,
    "crash_loop": _int_min(1),
    "crash_window": _positive_number,
    "red_limit": _int_min(1),
    "redeliver": _seconds,
    "max_deliveries": _int_min(1),
}

SCHEMA["context"] = {"max_chars": _int_min(1000)}

SCHEMA["executor"] = {"kind": _executor_kind, "scheduler": _scheduler, "slots": _int_min(1)}


def _url(v: Any) -> str:
    if not isinstance(v, str) or not v.startswith(("http://", "https://")):
        raise ValueError('an http(s) URL, e.g. "https://api.anthropic.com"')
    return v


def _price(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        raise ValueError("a price in USD per million tokens >= 0")
    return float(v)


SCHEMA["agents"] = {
    "model": _str,
    "base_url": _url,
    "max_tokens_per_worker": _int_min(1),
    "max_turns": _int_min(1),
    "price_in": _price,
    "price_out": _price,
    "run_timeout": _positive_number,
}

SCHEMA["sandbox"] = {"agent_network": _bool}

CHECK_SCHEMA: dict[str, Callable[[Any], Any]] = {
    "run": _run,
    "cwd": _str,
    "stage": _stage,
    "timeout": _positive_number,
    "kind": _kind,
    "required": _bool,
    "env": _env,
}


def default_session(name: str, root: Path | None) -> str:
    """`fac-<name>-<hash>`: readable, and unique per factory path (two `app` directories get two sessions).

    The hash is of the resolved path; without a root (a config read from a commit) it is left off.
    """
    # a directory like "api.v2" must still give tmux a session name it keeps as given
    base = "fac-" + name.replace(".", "_").replace(":", "_")
    if root is None:
        return base
    return f"{base}-{hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:6]}"


def parse(text: str, *, default_name: str, where: str = CONFIG_NAME, root: Path | None = None) -> Config:
    """Parse and validate the text of a factory.toml (`root`: the factory it belongs to, for the session).

    Every problem in the file is reported at once, in one FacError, not only the first one.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise FacError(f"{where} is not valid TOML: {e}", hint=f"fix the syntax in {where}") from None
    problems: list[tuple[str, str]] = []  # (what is wrong, how to fix it), in the file's order
    values: dict[str, dict[str, Any]] = {}
    checks: list[CheckDef] = []
    for section, body in data.items():
        if section == "checks":
            if not isinstance(body, dict):
                problems.append(_expected("[checks]", "tables like [checks.tests]", body, where))
                continue
            for name, spec in body.items():
                check = _parse_check(name, spec, where, problems)
                if check is not None:
                    checks.append(check)
            continue
        if section not in SCHEMA:
            known = ", ".join(f"[{s}]" for s in [*SCHEMA, "checks.NAME"])
            problems.append((f"unknown section [{section}]", f"known sections: {known}"))
            continue
        if not isinstance(body, dict):
            problems.append(_expected(f"[{section}]", "a table", body, where))
            continue
        values[section] = {}
        for key, raw in body.items():
            conv = SCHEMA[section].get(key)
            if conv is None:
                known = ", ".join(SCHEMA[section])
                problems.append((f"unknown key [{section}] {key}", f"keys of [{section}]: {known}"))
                continue
            try:
                values[section][key] = conv(raw)
            except Problem as e:
                problems.append((f"[{section}] {key}: {e.message}", e.hint))
            except ValueError as e:
                problems.append(_expected(f"[{section}] {key}", str(e), raw, where))
    executor = values.get("executor", {})
    if executor.get("kind") == "dask" and "scheduler" not in executor:
        problems.append(
            (
                '[executor] kind = "dask" needs the scheduler\'s address',
                'add scheduler = "tcp://HOST:8786" to [executor] (the address `dask scheduler` prints)',
            )
        )
    if executor.get("kind") == "dask" and "remote" not in values.get("factory", {}):
        problems.append(
            (
                '[executor] kind = "dask" needs [factory] remote: Dask workers fetch candidates from it',
                'add remote = "origin" to [factory] (a git remote every Dask worker can fetch from)',
            )
        )
    if problems:
        raise _problems_error(problems, where)
    fac = values.get("factory", {})
    name = fac.get("name", default_name)
    session = values.get("tmux", {}).get("session") or default_session(name, root)
    return Config(
        name=name,
        main=fac.get("main", "main"),
        remote=fac.get("remote"),
        session=session,
        queue=QueueConfig(**values.get("queue", {})),
        supervisor=SupervisorConfig(**values.get("supervisor", {})),
        checks=tuple(checks),
        raw=data,
        context_max_chars=values.get("context", {}).get("max_chars", 24_000),
        agents=AgentsConfig(**values.get("agents", {})),
        sandbox=SandboxConfig(**values.get("sandbox", {})),
        executor=ExecutorConfig(**executor),
    )


def _expected(key: str, expected: str, got: Any, where: str) -> tuple[str, str]:
    return f"{key}: expected {expected}, got {got!r}", f"edit {where}; `fac config --help` lists every key"


def _problems_error(problems: list[tuple[str, str]], where: str) -> FacError:
    """One FacError for every problem: one line that numbers them, one hint line with their fixes."""
    if len(problems) == 1:
        message, hint = problems[0]
        return FacError(f"{where}: {message}", hint=hint)
    generic = f"edit {where}; `fac config --help` lists every key"
    listed = "; ".join(f"({i}) {message}" for i, (message, _) in enumerate(problems, 1))
    fixes = [f"({i}) {hint}" for i, (_, hint) in enumerate(problems, 1) if hint != generic]
    hint = "; ".join([f"fix all of them in {where}", *fixes, "`fac config --help` lists every key"])
    return FacError(f"{where}: {len(problems)} problems: {listed}", hint=hint)


def _parse_check(name: str, spec: Any, where: str, problems: list[tuple[str, str]]) -> CheckDef | None:
    """The check `name`, or None after adding what is wrong with it to `problems`."""
    key = f"[checks.{name}]"
    if not isinstance(spec, dict):
        problems.append(_expected(key, "a table with at least `run`", spec, where))
        return None
    before = len(problems)
    if "run" not in spec:
        problems.append((f"{key} has no `run`", 'add e.g. run = "python -m pytest -q"'))
    kwargs: dict[str, Any] = {}
    for k, raw in spec.items():
        conv = CHECK_SCHEMA.get(k)
        if conv is None:
            problems.append((f"unknown key {key} {k}", f"keys of a check: {', '.join(CHECK_SCHEMA)}"))
            continue
        try:
            kwargs[k] = conv(raw)
        except Problem as e:
            problems.append((f"{key} {k}: {e.message}", e.hint))
        except ValueError as e:
            problems.append(_expected(f"{key} {k}", str(e), raw, where))
    if len(problems) > before:
        return None
    if "required" not in kwargs and kwargs.get("kind") == "judgment":
        kwargs["required"] = False  # a judgment (an LLM's review) advises unless made required
    return CheckDef(name=name, source=where, **kwargs)


def load(root: Path) -> Config:
    """Load `root/factory.toml` (a missing file means all defaults)."""
    path = root / CONFIG_NAME
    try:
        text = path.read_bytes().decode("utf-8") if path.exists() else ""
    except UnicodeDecodeError as e:
        raise FacError(
            f"{path} is not UTF-8 text (bad byte at offset {e.start})", hint=f"save {path} as UTF-8"
        ) from None
    except OSError as e:
        raise FacError(f"cannot read {path}: {e.strerror}", hint="check its permissions") from None
    return parse(text, default_name=root.name, root=root)


def dumps(data: dict[str, Any]) -> str:
    import tomli_w

    return tomli_w.dumps(data)


DEFAULT_TOML = """\
# fac factory configuration. `fac config --help` lists every key.

[factory]
main = "main"

[queue]
# Branches tested together in one candidate; 1 gives a plain serial queue.
max_batch = 16
# A red single-branch candidate is run again this many times before it is blamed.
retries = 1
"""

SAMPLE_CHECKS_TOML = """
[checks.tests]
run = "python -m pytest -q"
cwd = "system-under-construction"
stage = ["inner", "gate"]
timeout = 300
"""
