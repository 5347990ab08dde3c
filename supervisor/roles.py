"""Roles: `roles/<name>.md`, TOML front matter between `+++` lines, then the prompt.

A new role is a new file; no code changes. The front matter says which runtime starts the agent,
which paths its branches may change (`writable` globs, checked by the scope guard) and how many
instances may run at once.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from supervisor import repo
from supervisor.errors import FacError
from supervisor.model import RUNTIME_NAMES

RUNTIMES = RUNTIME_NAMES
DEFAULT_WRITABLE = ("system-under-construction/**",)
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,31}$")
KEYS = {"name", "description", "runtime", "writable", "max_instances", "permission_mode"}
# Claude Code's permission modes; fac's default is the safest one that can edit and run the checks.
PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "dontAsk")


@dataclass(frozen=True)
class Role:
    name: str
    description: str
    runtime: str
    writable: tuple[str, ...]
    max_instances: int  # 0 means no limit
    prompt: str
    path: Path
    permission_mode: str | None = None


def parse(path: Path, text: str) -> Role:
    where = str(path)
    lines = text.splitlines()
    if not lines or lines[0].strip() != "+++":
        raise FacError(f"{where}: a role starts with a `+++` line, then TOML front matter", hint=_HINT)
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() == "+++")
    except StopIteration:
        raise FacError(
            f"{where}: the front matter is not closed by a second `+++` line", hint=_HINT
        ) from None
    try:
        meta = tomllib.loads("\n".join(lines[1:end]))
    except tomllib.TOMLDecodeError as e:
        raise FacError(f"{where}: front matter is not valid TOML: {e}", hint=_HINT) from None
    unknown = set(meta) - KEYS
    if unknown:
        raise FacError(
            f"{where}: unknown front matter key(s) {sorted(unknown)}", hint=f"known: {sorted(KEYS)}"
        )
    name = meta.get("name", path.stem)
    if name != path.stem:
        raise FacError(f"{where}: name {name!r} differs from the file name", hint=f"rename it to {name}.md")
    runtime = meta.get("runtime", "command")
    if runtime not in RUNTIMES:
        raise FacError(f"{where}: runtime {runtime!r} is unknown", hint=f"use one of: {', '.join(RUNTIMES)}")
    writable = meta.get("writable", list(DEFAULT_WRITABLE))
    if not isinstance(writable, list) or not all(isinstance(g, str) and g for g in writable):
        raise FacError(f"{where}: writable must be a list of glob strings", hint='e.g. writable = ["src/**"]')
    max_instances = meta.get("max_instances", 0)
    if isinstance(max_instances, bool) or not isinstance(max_instances, int) or max_instances < 0:
        raise FacError(f"{where}: max_instances must be an integer >= 0 (0: no limit)")
    permission_mode = meta.get("permission_mode")
    if permission_mode is not None and permission_mode not in PERMISSION_MODES:
        raise FacError(
            f"{where}: permission_mode {permission_mode!r} is unknown",
            hint=f"use one of: {', '.join(PERMISSION_MODES)}",
        )
    description = meta.get("description", "")
    if not isinstance(description, str):
        raise FacError(f"{where}: description must be a string")
    return Role(
        name=name,
        description=description,
        runtime=runtime,
        writable=tuple(writable),
        max_instances=max_instances,
        prompt="\n".join(lines[end + 1 :]).strip() + "\n",
        path=path,
        permission_mode=permission_mode,
    )


_HINT = "see `fac roles new NAME` for the format"


def load_all(root: Path) -> dict[str, Role]:
    """Every role in roles/; a broken file raises, naming it (`fac roles` validates them all)."""
    return {name: get(root, name) for name in names(root)}


def names(root: Path) -> list[str]:
    """The roles roles/ has files for, whether or not each file parses."""
    roles_dir = root / "roles"
    return [p.stem for p in sorted(roles_dir.glob("*.md"))] if roles_dir.is_dir() else []


def get(root: Path, name: str) -> Role:
    """Role `name`, parsed from its own file only: one broken role file does not stop the others."""
    path = root / "roles" / f"{name}.md"
    if "/" in name or name.startswith(".") or not path.is_file():
        known = ", ".join(names(root)) or "(none: roles/ is empty)"
        raise FacError(
            f"unknown role {name!r}", hint=f"known roles: {known}; create one with `fac roles new {name}`"
        )
    return parse(path, path.read_text(encoding="utf-8"))


def writable_at(root: Path, rev: str, role_name: str) -> tuple[str, ...]:
    """The role's writable globs as commit `rev` (main) has them, so a branch cannot widen its own scope."""
    text = repo.show_file(root, rev, f"roles/{role_name}.md")
    if text is None:
        return DEFAULT_WRITABLE
    try:
        return parse(Path(f"roles/{role_name}.md"), text).writable
    except FacError:
        return DEFAULT_WRITABLE


def scaffold(root: Path, name: str, description: str = "", runtime: str = "command") -> Path:
    if not NAME_RE.match(name):
        raise FacError(
            f"invalid role name {name!r}",
            hint="use lower-case letters, digits and '-', starting with a letter",
        )
    if runtime not in RUNTIMES:
        raise FacError(f"runtime {runtime!r} is unknown", hint=f"use one of: {', '.join(RUNTIMES)}")
    path = root / "roles" / f"{name}.md"
    if path.exists():
        raise FacError(f"role {name!r} already exists at {path}", hint="edit the file, or pick another name")
    path.parent.mkdir(parents=True, exist_ok=True)
    desc = description or f"The {name} role."
    path.write_text(
        "+++\n"
        f'name = "{name}"\n'
        f"description = {_toml_str(desc)}\n"
        f'runtime = "{runtime}"\n'
        'writable = ["system-under-construction/**"]\n'
        "max_instances = 0\n"
        "+++\n"
        f"You are a {name} in a software factory run by fac.\n\n"
        "Describe here what this role does, what it must never do, and how it knows it is done.\n",
        encoding="utf-8",
    )
    return path


def _toml_str(s: str) -> str:
    import tomli_w

    return tomli_w.dumps({"x": s}).split("=", 1)[1].strip()


def runtime_for(runtime: str | None, command: str | None) -> str | None:
    """The runtime `--runtime` and `--cmd` ask for together: a command implies the command runtime."""
    if command is not None and runtime not in (None, "command"):
        raise FacError(f"--cmd runs the command runtime; it cannot be combined with --runtime {runtime}")
    return "command" if command else runtime
