"""How a branch could change the way it is judged, read from plain text: test infrastructure (conftest,
pytest configuration and its options, .gitattributes), code that reaches into the test framework, and
symlinks that leave the tree. Pure functions over file contents; `guards` gathers them from git.
"""

from __future__ import annotations

import ast
import configparser
import posixpath
import re
import shlex
import threading
import tomllib
from dataclasses import dataclass
from pathlib import PurePosixPath

# --- test infrastructure: a change here is held for a human ---

# Files whose pytest section configures collection; the section each keeps it in (None: the file).
PYTEST_CONFIG = {
    "pytest.ini": None,
    ".pytest.ini": None,
    "pyproject.toml": "tool.pytest",
    "setup.cfg": "tool:pytest",
    "tox.ini": "pytest",
}
# Command-line options that in `addopts` change what is collected, which plugins load, or where the
# configuration and conftest files come from.
JUDGING_OPTIONS = {
    "-p": "loads or blocks a plugin",
    "-o": "overrides a configuration value",
    "--override-ini": "overrides a configuration value",
    "-c": "reads another configuration file",
    "--config-file": "reads another configuration file",
    "--rootdir": "moves the root directory",
    "--confcutdir": "changes which conftest files load",
    "--noconftest": "skips the conftest files",
    "-k": "deselects tests by name",
    "-m": "deselects tests by marker",
    "--deselect": "deselects tests",
    "--ignore": "ignores test paths",
    "--ignore-glob": "ignores test paths",
    "--pyargs": "collects from installed packages",
    "--continue-on-collection-errors": "runs despite collection errors",
}
# Short options whose value may be glued on (`-pfoo`, `-kexpr`).
_GLUED = ("-p", "-o", "-c", "-k", "-m")


def judging_options(addopts: str) -> list[str]:
    """The options in an `addopts` value that change how tests are judged, each with its value."""
    try:
        words = shlex.split(addopts)
    except ValueError:
        words = addopts.split()
    found, i = [], 0
    while i < len(words):
        word = words[i]
        name, _, glued = word.partition("=") if word.startswith("--") else (word, "", "")
        if not glued and word[:2] in _GLUED and len(word) > 2 and not word.startswith("--"):
            name, glued = word[:2], word[2:]
        if name in JUDGING_OPTIONS:
            takes_value = name not in ("--noconftest", "--pyargs", "--continue-on-collection-errors")
            value = glued
            if takes_value and not glued and i + 1 < len(words):
                i += 1
                value = words[i]
            found.append(f"{name} {value}".strip())
        i += 1
    return found


def pytest_section(name: str, text: str | None) -> dict[str, str] | None:
    """The pytest settings a configuration file holds (each value as text); None when it has none.

    A file that does not parse gives its whole text under the key "" so that any change to it counts.
    """
    if text is None:
        return None
    section = PYTEST_CONFIG[name]
    if name == "pyproject.toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            return {"": text}
        table = data.get("tool", {}).get("pytest")
        if not isinstance(table, dict):
            return None
        flat: dict[str, str] = {}
        for sub, values in table.items():
            items = values.items() if isinstance(values, dict) else [("", values)]
            for key, value in items:
                flat[f"{sub}.{key}".rstrip(".")] = _as_text(value)
        return flat
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return {"": text}
    wanted = [section] if section else ["pytest", "tool:pytest"]
    for s in wanted:
        if parser.has_section(s):
            return dict(parser.items(s))
    return None


def _as_text(value: object) -> str:
    if isinstance(value, list):
        return " ".join(shlex.quote(str(v)) for v in value)
    return str(value)


def _addopts(settings: dict[str, str] | None) -> str:
    if not settings:
        return ""
    return " ".join(v for k, v in settings.items() if k.rsplit(".", 1)[-1] == "addopts")


def infrastructure_change(path: str, old: str | None, new: str | None) -> str | None:
    """Why a change to `path` (text before and after; None: absent) needs a human, or None."""
    name = PurePosixPath(path).name
    if name == "conftest.py":
        return f"{path}: conftest.py {_verb(old, new)} (it can change how every test is collected and judged)"
    if name == ".gitattributes":
        return f"{path}: .gitattributes {_verb(old, new)} (it changes how git shows and merges files)"
    if name not in PYTEST_CONFIG:
        return None
    before, after = pytest_section(name, old), pytest_section(name, new)
    if before == after:
        return None
    b, a = before or {}, after or {}
    keys = sorted(k or "(the whole file)" for k in set(b) | set(a) if b.get(k) != a.get(k))
    what = f"pytest configuration changes {', '.join(keys)}"
    added = [o for o in judging_options(_addopts(after)) if o not in judging_options(_addopts(before))]
    if added:
        why = "; ".join(f"{o} {JUDGING_OPTIONS[o.split()[0]]}" for o in added)
        what += f"; addopts adds {why}"
    return f"{path}: {what}"


def _verb(old: str | None, new: str | None) -> str:
    return "added" if old is None else "removed" if new is None else "changed"


# --- non-test code that reaches into the test framework: red ---

FRAMEWORK = ("pytest", "_pytest", "pluggy", "py")
# Files Python runs at start-up from a directory on sys.path, and names that shadow the framework.
STARTUP = ("sitecustomize.py", "usercustomize.py")


def is_test_module(path: str) -> bool:
    """Files that may import the test framework: test modules and conftest.py (held anyway)."""
    name = PurePosixPath(path).name
    return name == "conftest.py" or (
        name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py"))
    )


def shadowing(path: str) -> str | None:
    """Why a file's mere presence hijacks the test process (shadows pytest, runs at start-up), or None."""
    parts = PurePosixPath(path).parts
    name = parts[-1]
    if name.endswith(".pth"):
        return f"{path}: a .pth file runs code when Python starts"
    if name in STARTUP:
        return f"{path}: {name} runs code when Python starts"
    stem = name.removesuffix(".py")
    if name.endswith(".py") and stem in FRAMEWORK and stem != "py":
        return f"{path}: shadows the test framework module {stem!r}"
    if any(p in ("pytest", "_pytest", "pluggy") for p in parts[:-1]) and name.endswith(".py"):
        return f"{path}: inside a package that shadows the test framework"
    return None


def _framework(module: str) -> bool:
    return module.split(".", 1)[0] in FRAMEWORK[:3]


_SYS_MODULES = re.compile(r"""sys\.modules\s*(\[|\.(get|pop|setdefault|update|__setitem__))""")
_TEXT_IMPORT = re.compile(r"^\s*(import|from)\s+(_?pytest|pluggy)\b")
# The merge queue screens branches in threads, and before 3.13 CPython's AST builder keeps its
# recursion counter per interpreter, so two parses at once can raise "SystemError: AST constructor
# recursion depth mismatch" (python/cpython#106905): every parse fac makes goes through parse_python.
_PARSE_LOCK = threading.Lock()


def parse_python(source: str) -> ast.Module:
    """`ast.parse`, one at a time across threads (raises SyntaxError or ValueError like it)."""
    with _PARSE_LOCK:
        return ast.parse(source)


@dataclass(frozen=True)
class Use:
    line: int
    what: str


def framework_uses(source: str) -> list[Use]:
    """Where a module imports or patches the test framework: imports of pytest/_pytest/pluggy (also by
    `__import__`/`importlib`), `sys.modules` lookups or writes, pytest hook functions, `pytest_plugins`."""
    try:
        tree = parse_python(source)
    except (SyntaxError, ValueError):
        # It cannot run as Python either, but say what it would do in the words of the lines.
        lines = list(enumerate(source.splitlines(), 1))
        imports = [Use(n, f"imports {m.group(2)}") for n, line in lines if (m := _TEXT_IMPORT.match(line))]
        return imports + [Use(n, "uses sys.modules") for n, line in lines if _SYS_MODULES.search(line)]
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    uses: list[Use] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            uses += [Use(node.lineno, f"imports {a.name}") for a in node.names if _framework(a.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and _framework(node.module):
            uses.append(Use(node.lineno, f"imports {node.module}"))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            fn = ast.unparse(node.func)
            arg = node.args[0].value
            if fn in ("__import__", "importlib.import_module", "import_module") and isinstance(arg, str):
                if _framework(arg):
                    uses.append(Use(node.lineno, f"imports {arg}"))
        elif isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.modules":
            if not _harmless_sys_modules(node, parents):
                uses.append(Use(node.lineno, "patches or reads the framework through sys.modules"))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("pytest_"):
            uses.append(Use(node.lineno, f"defines the pytest hook {node.name}"))
        elif isinstance(node, ast.Name) and node.id == "pytest_plugins" and isinstance(node.ctx, ast.Store):
            uses.append(Use(node.lineno, "sets pytest_plugins"))
    return sorted(set(uses), key=lambda u: (u.line, u.what))


def _harmless_sys_modules(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """A read of one module other than the framework's: `sys.modules[__name__]`, `sys.modules.get("x")`."""
    up = parents.get(node)
    key: ast.AST | None = None
    if isinstance(up, ast.Subscript) and up.value is node and isinstance(up.ctx, ast.Load):
        key = up.slice
    elif isinstance(up, ast.Attribute) and up.attr in ("get", "__contains__"):
        call = parents.get(up)
        if isinstance(call, ast.Call) and call.func is up and call.args:
            key = call.args[0]
    elif isinstance(up, ast.Compare) and node in up.comparators:
        key = up.left  # `"x" in sys.modules`
    if isinstance(key, ast.Name) and key.id == "__name__":
        return True
    return isinstance(key, ast.Constant) and isinstance(key.value, str) and not _framework(key.value)


def new_framework_uses(path: str, old: str | None, new: str | None) -> list[str]:
    """`path:line: what` for each use of the framework in `new` that `old` did not have (a file main
    already has keeps its own uses), for a file that is not a test module."""
    if new is None or is_test_module(path) or not path.endswith(".py"):
        return []
    had = {u.what for u in framework_uses(old)} if old else set()
    return [f"{path}:{u.line}: {u.what}" for u in framework_uses(new) if u.what not in had]


# --- symlinks: never out of the tree, never into a protected path ---

_MAX_HOPS = 40  # as the kernel's limit on nested symlinks


def resolve(path: str, links: dict[str, str]) -> str | None:
    """Where `path` leads inside the tree, following `links` (path -> target) as the kernel would;
    None when it leaves the tree (an absolute target, `..` above the root) or loops."""
    pending = list(PurePosixPath(path).parts)
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not done:
                return None
            done.pop()
            continue
        here = posixpath.join(*done, part)
        target = links.get(here)
        if target is None:
            done.append(part)
            continue
        hops += 1
        if hops > _MAX_HOPS or target.startswith("/"):
            return None
        pending = list(PurePosixPath(target).parts) + pending
    return posixpath.join(*done) if done else "."


def _under(path: str, protected: str) -> bool:
    if protected.endswith("/"):
        return path == protected.rstrip("/") or path.startswith(protected)
    return path == protected


def symlink_problems(changed: list[str], links: dict[str, str], protected: tuple[str, ...]) -> list[str]:
    """For each changed symlink: `path -> target: why` when it leaves the tree or lands in a protected
    path (`protected` as guards.PROTECTED: directories end in /)."""
    out = []
    for path in changed:
        target = links[path]
        where = resolve(path, links)
        if target.startswith("/"):
            out.append(f"{path} -> {target}: an absolute target, outside the repository")
        elif where is None:
            out.append(f"{path} -> {target}: leaves the repository")
        elif any(_under(where, p) for p in protected):
            out.append(f"{path} -> {target}: lands in the protected path {where}")
        elif PurePosixPath(where).name == "conftest.py" or PurePosixPath(where).name in PYTEST_CONFIG:
            out.append(f"{path} -> {target}: lands on test infrastructure ({where})")
    return out
