"""Git plumbing used by the queue and the guards: one thin wrapper over the `git` executable.

Plumbing calls go straight to `git` (a subprocess with an argument list, never a shell) because
they are many and small; worktree bookkeeping lives in `worktrees.py`.

Every call runs hardened (`hardened_argv`, `hardened_env`): no hooks, no fsmonitor, no global or
system attributes, no signing, every merge and filter driver the shared config defines or
`.git/info/attributes` selects switched off, and every diff with `DIFF_OPTIONS` (no textconv, no
external diff, all text), so nothing a branch or a worker plants runs on the trusted side. The
reads that judge a branch (`trusted=True`: changed paths, blobs, trees, merges) also run against
the bare repository from an empty directory, so no `.gitattributes` of any checkout applies, and
content is read with `cat-file`: the guards see the bytes.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import FacError

MIN_GIT = (2, 38)  # `git merge-tree --write-tree`
FAC_IDENTITY = {"name": "fac", "email": "fac@localhost"}


class GitError(FacError):
    pass


# Settings that would run a program or change what git shows, whoever wrote them into the shared
# config (or a file it includes): hooks (reference-transaction runs on update-ref), fsmonitor (runs
# on every index read), attributes outside the repository, commit signing (commit-tree runs
# gpg.program), signature checks, renormalizing merges (they run clean filters). The system-wide
# config is not read at all (GIT_CONFIG_NOSYSTEM in `hardened_env`).
HARDENING = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.attributesFile=/dev/null",
    "-c",
    "commit.gpgSign=false",
    "-c",
    "tag.gpgSign=false",
    "-c",
    "log.showSignature=false",
    "-c",
    "merge.renormalize=false",
    "-c",
    "diff.noprefix=false",
    # no helper program for a password, no submodule work (a submodule has its own config and hooks),
    # no automatic gc or maintenance in the background after fac's own commits
    "-c",
    "credential.helper=",
    "-c",
    "submodule.recurse=false",
    "-c",
    "gc.auto=0",
    "-c",
    "maintenance.auto=false",
)
# Environment a caller may carry that would point git elsewhere or run a program.
_DROPPED_ENV = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_COMMON_DIR",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_EXTERNAL_DIFF",
    "GIT_DIFF_OPTS",
    "GIT_PAGER",
    "PAGER",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_ATTR_SOURCE",
    "GIT_NAMESPACE",
)
# Options every diff the trusted side runs passes: no textconv, no external diff (a diff driver's
# programs never run), every file shown as text (a `-diff` or `binary` attribute hides nothing).
DIFF_OPTIONS = ("--no-textconv", "--no-ext-diff", "--text", "--no-color")
# `merge=NAME` or `filter=NAME` in an attributes file; `[merge "NAME"]` (or the old `[merge.NAME]`) in
# a config file; `path = FILE` of an `[include]`.
_ATTR_DRIVER = re.compile(r"(?:^|\s)(merge|filter)=(\S+)")
_CONFIG_DRIVER = re.compile(r'^\s*\[\s*(merge|filter)(?:\s+"([^"]+)"|\.([^\]\s]+))\s*\]', re.I | re.M)
_INCLUDE = re.compile(r"^\s*path\s*=\s*(.+?)\s*$", re.M)
BUILTIN_MERGES = ("text", "binary", "union")
# What switches each kind of driver off: a filter with no command is no filter (nothing runs on
# checkout or hash); a merge driver becomes git's own three-way merge of the three files.
_NEUTRAL = {
    "filter": ("clean=", "smudge=", "process=", "required=false"),
    "merge": ("driver=git merge-file --marker-size=%L %A %O %B",),
}


def driver_names(attributes: str, config: str) -> dict[str, set[str]]:
    """The merge and filter driver names an attributes file selects or a config file defines."""
    names: dict[str, set[str]] = {"merge": set(), "filter": set()}
    for line in attributes.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for kind, name in _ATTR_DRIVER.findall(line):
            names[kind].add(name)
    for m in _CONFIG_DRIVER.finditer(config):
        names[m.group(1).lower()].add(m.group(2) or m.group(3))
    names["merge"] -= set(BUILTIN_MERGES)
    return names


def neutralizers(names: dict[str, set[str]]) -> list[str]:
    """`-c` options that switch off every named driver (pure: table-tested)."""
    out: list[str] = []
    for kind, found in sorted(names.items()):
        for name in sorted(found):
            if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
                continue  # a name git could not define in config either
            for setting in _NEUTRAL[kind]:
                out += ["-c", f"{kind}.{name}.{setting}"]
    return out


MAX_INCLUDE_DEPTH = 10  # git's own limit on nested includes


def _global_configs() -> list[Path]:
    """The user's own config files git reads (the system's is off: GIT_CONFIG_NOSYSTEM)."""
    given = os.environ.get("GIT_CONFIG_GLOBAL")
    if given is not None:
        return [Path(given)] if given else []
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return [Path(xdg) / "git" / "config", Path.home() / ".gitconfig"]


def _config_text(common: Path) -> str:
    """Every config file git reads for the repository, where a driver could be defined: the user's,
    the shared config, and every file they include (`include` and `includeIf`, as deep as git
    follows them), relative paths resolved against the including file."""
    seen: set[Path] = set()
    texts: list[str] = []

    def visit(path: Path, depth: int) -> None:
        if depth > MAX_INCLUDE_DEPTH or path in seen:
            return
        seen.add(path)
        text = _read(path)
        texts.append(text)
        for m in _INCLUDE.finditer(text):
            inc = Path(m.group(1).strip('"')).expanduser()
            visit(inc if inc.is_absolute() else path.parent / inc, depth + 1)

    for path in [*_global_configs(), common / "config"]:
        visit(path, 0)
    return "\n".join(texts)


@functools.cache
def common_dir(root: Path) -> Path:
    """The repository's shared git directory (`.git` of the factory, even from a linked worktree)."""
    dot = root / ".git"
    if dot.is_dir():
        return dot.resolve()
    proc = subprocess.run(
        ["git", *HARDENING, "rev-parse", "--path-format=absolute", "--git-common-dir"],
        cwd=root,
        capture_output=True,
        text=True,
        env=hardened_env(),
    )
    if proc.returncode != 0:
        raise GitError(f"{root} is not a git repository: {proc.stderr.strip()}")
    return Path(proc.stdout.strip())


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def hardened_argv(root: Path, args: tuple[str, ...] | list[str], *, trusted: bool = False) -> list[str]:
    """`git` with every hardening option for a call about `root`; `trusted` reads the bare repository."""
    try:
        common = common_dir(root)
    except GitError:
        return ["git", *HARDENING, *args]  # not a repository (yet): nothing in it can be selected
    names = driver_names(_read(common / "info" / "attributes"), _config_text(common))
    where = ["--git-dir", str(common), "--bare"] if trusted else []
    return ["git", *where, *HARDENING, *neutralizers(names), *args]


@functools.cache
def _empty_dir() -> str:
    """A private empty directory: trusted reads run there, where no `.gitattributes` can be."""
    return tempfile.mkdtemp(prefix="fac-git-")


def hardened_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every git call: no system attributes, nothing that redirects git."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env["GIT_ATTR_NOSYSTEM"] = "1"
    env["GIT_CONFIG_NOSYSTEM"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    return {**env, **(extra or {})}


def _run(
    root: Path,
    args: tuple[str, ...] | list[str],
    *,
    trusted: bool = False,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    argv = hardened_argv(root, args, trusted=trusted)
    cwd = _empty_dir() if "--bare" in argv[: argv.index(HARDENING[0])] else root
    deadline = time.monotonic() + WORKTREE_SETTLE
    while True:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, input=input, env=hardened_env(env))
        if proc.returncode == 0 or time.monotonic() > deadline:
            return proc
        if not _PLACEHOLDER_HEAD.search(proc.stderr.decode("utf-8", errors="replace")):
            return proc
        time.sleep(0.05)  # a worktree being added: git writes its real HEAD in a moment


# `git worktree add` first writes a placeholder HEAD (the null id) into the new worktree's entry and
# replaces it a moment later; a command that walks every worktree's HEAD in that moment (a fetch into
# the factory: every `fac submit`) fails with "bad object worktrees/<id>/HEAD". fac adds such worktrees
# all the time (each gate run checks its candidate out in one), so every git call waits that out.
_PLACEHOLDER_HEAD = re.compile(r"bad object worktrees/[^/\s]+/HEAD")
WORKTREE_SETTLE = 10.0  # seconds a git call waits for a worktree being added to get its real HEAD


@functools.cache
def git_version() -> tuple[int, int]:
    exe = shutil.which("git")
    if exe is None:
        raise FacError("git is not installed", hint="install it: apt-get install -y git")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)", out)
    if not m:
        raise FacError(f"cannot read the git version from {out!r}", hint="install git >= 2.38")
    return int(m.group(1)), int(m.group(2))


def require_git() -> None:
    if git_version() < MIN_GIT:
        have = ".".join(map(str, git_version()))
        raise FacError(
            f"git {have} is too old: fac needs git >= 2.38 (for merge-tree --write-tree)",
            hint="upgrade git (Debian 12: apt-get install -y git; older systems: backports)",
        )


def git(
    root: Path,
    *args: str,
    check: bool = True,
    input: str | None = None,
    env: dict[str, str] | None = None,
    trusted: bool = False,
) -> str:
    """Run git (hardened) in `root` and return stdout (stripped of the final newline); `trusted`
    runs it on the bare repository from an empty directory (for reads that judge a branch)."""
    proc = _run(root, args, trusted=trusted, input=None if input is None else input.encode(), env=env)
    out = proc.stdout.decode("utf-8", errors="replace")
    if check and proc.returncode != 0:
        cmd = " ".join(["git", *args])
        err = proc.stderr.decode("utf-8", errors="replace").strip()
        raise GitError(f"`{cmd}` failed: {err or out.strip()}")
    return out.rstrip("\n")


def identity_env(root: Path) -> dict[str, str]:
    """An identity for commits fac makes itself: the user's own (their global config, or GIT_AUTHOR_*
    in fac's environment), else fac's. Never the repository's config: a worker can write that one,
    and would sign the queue's merge commits with any name it likes."""
    env: dict[str, str] = {}
    if not git(root, "config", "--global", "user.name", check=False):
        env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = FAC_IDENTITY["name"]
    if not git(root, "config", "--global", "user.email", check=False):
        env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = FAC_IDENTITY["email"]
    return env


def rev_parse(root: Path, ref: str) -> str | None:
    proc = _run(root, ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"])
    return proc.stdout.decode().strip() if proc.returncode == 0 else None


def rev_parse_all(root: Path, refs: list[str]) -> list[str | None]:
    """`rev_parse` of each of `refs` (None where it names no commit), in one git process."""
    if not refs or any("\n" in ref for ref in refs):
        return [rev_parse(root, ref) for ref in refs]
    lines = "".join(f"{ref}^{{commit}}\n" for ref in refs).encode()
    proc = _run(root, ["cat-file", "--batch-check=%(objectname) %(objecttype)"], input=lines)
    out = proc.stdout.decode().splitlines() if proc.returncode == 0 else []
    if len(out) != len(refs):  # a git that answered otherwise: ask one by one
        return [rev_parse(root, ref) for ref in refs]
    found: list[str | None] = []
    for line in out:
        sha, _, kind = line.partition(" ")
        found.append(sha if kind == "commit" else None)
    return found


def tree_id(root: Path, rev: str, path: str) -> str | None:
    """The id of the tree at `path` in `rev` (a content hash of that directory), or None if it has none."""
    proc = _run(root, ["ls-tree", "-z", rev, "--", path], trusted=True)
    out = proc.stdout.decode("utf-8", errors="replace")
    for item in out.split("\0") if proc.returncode == 0 else []:
        meta, _, name = item.partition("\t")
        parts = meta.split()
        if name == path and len(parts) == 3 and parts[1] == "tree":
            return parts[2]
    return None


def tree_of(root: Path, rev: str) -> str:
    return git(root, "rev-parse", f"{rev}^{{tree}}", trusted=True)


def is_ancestor(root: Path, a: str, b: str) -> bool:
    return _run(root, ["merge-base", "--is-ancestor", a, b], trusted=True).returncode == 0


def unmerged_count(root: Path, head: str, base: str) -> int:
    """How many commits `head` has that `base` does not (0 when base already contains it)."""
    out = git(root, "rev-list", "--count", f"{base}..{head}", check=False)
    return int(out) if out.isdigit() else 0


def merge_base(root: Path, a: str, b: str) -> str | None:
    out = git(root, "merge-base", a, b, check=False, trusted=True)
    return out or None


@dataclass(frozen=True)
class MergeResult:
    tree: str | None  # None when the merge conflicts
    conflicts: tuple[str, ...] = ()


def merge_tree(root: Path, ours: str, theirs: str) -> MergeResult:
    """Merge two commits without touching any worktree or index (no attributes of any checkout apply)."""
    proc = _run(
        root, ["merge-tree", "--write-tree", "--name-only", "--no-messages", ours, theirs], trusted=True
    )
    lines = proc.stdout.decode("utf-8", errors="replace").splitlines()
    if proc.returncode == 0:
        return MergeResult(tree=lines[0].strip())
    if proc.returncode == 1:
        paths = tuple(dict.fromkeys(line for line in lines[1:] if line.strip()))
        return MergeResult(tree=None, conflicts=paths)
    raise GitError(f"git merge-tree {ours} {theirs} failed: {proc.stderr.decode(errors='replace').strip()}")


def commit_tree(
    root: Path, tree: str, parents: list[str], message: str, env: dict[str, str] | None = None
) -> str:
    """A commit of `tree` on `parents`; `env` defaults to `identity_env` (pass it once when making many)."""
    args = ["commit-tree", tree]
    for p in parents:
        args += ["-p", p]
    ident = identity_env(root) if env is None else env
    return git(root, *args, input=message, env=ident, trusted=True).strip()


def update_ref_cas(root: Path, ref: str, new: str, old: str) -> bool:
    """Move `ref` to `new` only if it still points at `old` (compare-and-swap)."""
    return _run(root, ["update-ref", ref, new, old], trusted=True).returncode == 0


# --- remotes: main on a remote, candidates pushed for executors on other machines ---


def remote_url(root: Path, remote: str) -> str:
    """The URL of git remote `remote` (a FacError naming the fix when there is none)."""
    proc = _run(root, ["remote", "get-url", remote])
    if proc.returncode != 0:
        raise FacError(
            f"the factory's repository has no git remote named {remote!r} ([factory] remote)",
            hint=f"add it: git remote add {remote} URL, or fix [factory] remote in factory.toml",
        )
    return proc.stdout.decode().strip()


def fetch_branch(root: Path, remote: str, branch: str) -> str | None:
    """Fetch `branch` from `remote` into `refs/remotes/<remote>/<branch>`; its sha (None: no such branch)."""
    tracking = f"refs/remotes/{remote}/{branch}"
    proc = _run(root, ["fetch", "--quiet", "--no-tags", remote, f"+refs/heads/{branch}:{tracking}"])
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", errors="replace").strip()
        if "couldn't find remote ref" in err:
            return None
        raise GitError(f"cannot fetch {branch} from {remote}: {err}")
    return rev_parse(root, tracking)


def push_cas(root: Path, remote: str, branch: str, new: str, old: str) -> bool:
    """The remote form of `update_ref_cas`: push `new` to `branch` on `remote` only if it is still at
    `old` (`--force-with-lease`); False when the remote's branch moved. Never a plain force."""
    proc = _run(
        root,
        [
            "push",
            "--quiet",
            "--porcelain",
            f"--force-with-lease=refs/heads/{branch}:{old}",
            remote,
            f"{new}:refs/heads/{branch}",
        ],
    )
    if proc.returncode == 0:
        git(root, "update-ref", f"refs/remotes/{remote}/{branch}", new)
        return True
    out = (proc.stdout + proc.stderr).decode("utf-8", errors="replace")
    if "stale info" in out or "rejected" in out or "fetch first" in out:
        return False
    raise GitError(f"cannot push {new[:10]} to {remote} {branch}: {out.strip()}")


def push_refs(root: Path, remote: str, refspecs: list[str]) -> None:
    """Push `refspecs` to `remote` (`+SHA:refs/fac/candidates/SHA` sets one, `:REF` deletes one)."""
    proc = _run(root, ["push", "--quiet", "--no-verify", remote, *refspecs])
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", errors="replace").strip()
        raise GitError(f"cannot push candidates to {remote}: {err}")


def remote_refs(root: Path, remote: str, prefix: str) -> list[str]:
    """The names of the refs under `prefix` (`refs/fac/candidates/`) on `remote`."""
    proc = _run(root, ["ls-remote", "--refs", remote, f"{prefix}*"])
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", errors="replace").strip()
        raise GitError(f"cannot list {prefix}* on {remote}: {err}")
    return [line.split("\t", 1)[1] for line in proc.stdout.decode().splitlines() if "\t" in line]


def fetch_refs(root: Path, url: str, refspecs: list[str]) -> None:
    """Fetch `refspecs` from `url` (a Dask worker's replica takes a candidate by its ref)."""
    proc = _run(root, ["fetch", "--quiet", "--no-tags", url, *refspecs])
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", errors="replace").strip()
        raise GitError(f"cannot fetch {' '.join(refspecs)} from {url}: {err}")


def read_tree(root: Path, old: str, new: str, *, dry_run: bool = False) -> bool:
    """Two-tree merge of the index and checkout from `old` to `new` (`read-tree -m -u`); False when it
    would overwrite local edits. With `dry_run`, only tell whether it would succeed."""
    return _run(root, ["read-tree", *(["-n"] if dry_run else []), "-m", "-u", old, new]).returncode == 0


def changed_paths(root: Path, base: str, head: str) -> list[tuple[str, str]]:
    """(status, path) for each path `head` changes relative to `base`; renames count as both paths."""
    return [(c.status, c.path) for c in changes(root, base, head)]


@dataclass(frozen=True)
class Change:
    """One path a commit changes: git's status letter, the modes and blob ids before and after."""

    status: str
    path: str
    old_mode: str
    new_mode: str
    old_sha: str
    new_sha: str


def changes(root: Path, base: str, head: str) -> list[Change]:
    """What `head` changes relative to `base`, as `diff-tree --raw` tells it (modes show symlinks)."""
    out = git(root, "diff-tree", "-r", "--raw", "--no-renames", "--no-abbrev", "-z", base, head, trusted=True)
    parts = [p for p in out.split("\0") if p]
    rows = []
    for i in range(0, len(parts) - 1, 2):
        old_mode, new_mode, old_sha, new_sha, status = parts[i].lstrip(":").split()
        rows.append(Change(status, parts[i + 1], old_mode, new_mode, old_sha, new_sha))
    return rows


def branch_heads(root: Path, prefix: str = "refs/heads/") -> dict[str, str]:
    """Every branch under `prefix` and its sha, in one git call (not one per branch)."""
    out = git(root, "for-each-ref", "--format=%(refname) %(objectname)", prefix, check=False)
    pairs = (line.split(" ", 1) for line in out.splitlines() if " " in line)
    return {ref.removeprefix("refs/heads/"): sha for ref, sha in pairs}


def show_file(root: Path, rev: str, path: str) -> str | None:
    """The text of `path` at `rev` (its bytes, through `cat-file`: no textconv, no filter); None if absent."""
    proc = _run(root, ["cat-file", "blob", f"{rev}:{path}"], trusted=True)
    if proc.returncode != 0:
        return None
    return proc.stdout.decode("utf-8", errors="replace")


def blob(root: Path, sha: str) -> bytes:
    """The bytes of blob `sha`."""
    proc = _run(root, ["cat-file", "blob", sha], trusted=True)
    if proc.returncode != 0:
        raise GitError(f"`git cat-file blob {sha}` failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def read_blobs(root: Path, rev: str, paths: list[str]) -> dict[str, str]:
    """The text of each of `paths` at `rev` that is a blob there, through one `git cat-file --batch`."""
    if not paths:
        return {}
    query = "".join(f"{rev}:{p}\n" for p in paths).encode()
    proc = _run(root, ["cat-file", "--batch"], input=query, trusted=True)
    if proc.returncode != 0:
        raise GitError(
            f"`git cat-file --batch` at {rev} failed: {proc.stderr.decode(errors='replace').strip()}"
        )
    data = proc.stdout
    out, pos = {}, 0
    for p in paths:
        nl = data.index(b"\n", pos)
        header = data[pos:nl].split()
        pos = nl + 1
        if len(header) < 3:
            continue  # "<rev>:<path> missing": no contents follow
        size = int(header[2])
        if header[1] == b"blob":
            out[p] = data[pos : pos + size].decode("utf-8", errors="replace")
        pos += size + 1  # a tree's contents follow too: skip them
    return out


def build_commit(
    root: Path, parent: str, changes: dict[str, str], message: str, env: dict[str, str] | None = None
) -> str:
    """A commit on `parent` with `changes` (path -> text), made without touching any checkout or index."""
    with tempfile.TemporaryDirectory(prefix="fac-index-") as tmp:
        ienv = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(root, "read-tree", parent, env=ienv)
        for path, text in changes.items():
            sha = git(root, "hash-object", "-w", "--no-filters", "--stdin", input=text)
            git(root, "update-index", "--add", "--cacheinfo", f"100644,{sha},{path}", env=ienv)
        tree = git(root, "write-tree", env=ienv)
    return commit_tree(root, tree, [parent], message, env={**identity_env(root), **(env or {})})


def overlay_commit(root: Path, commit: str, source: str, paths: list[str], message: str) -> str:
    """A commit on `commit` whose `paths` are as at `source` (gone where `source` has none); `commit`
    itself when there is nothing to overlay. No checkout or index is touched."""
    if not paths:
        return commit
    listed = git(root, "ls-tree", "-z", source, "--", *paths)
    have: dict[str, str] = {}
    for item in listed.split("\0"):
        if item:
            meta, name = item.split("\t", 1)
            mode, _type, sha = meta.split()
            have[name] = f"{mode} {sha}"
    lines = [f"{have[p]}\t{p}" if p in have else f"0 {'0' * 40}\t{p}" for p in dict.fromkeys(paths)]
    with tempfile.TemporaryDirectory(prefix="fac-index-") as tmp:
        ienv = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(root, "read-tree", commit, env=ienv)
        git(root, "update-index", "--index-info", input="\n".join(lines) + "\n", env=ienv)
        tree = git(root, "write-tree", env=ienv)
    return commit_tree(root, tree, [commit], message)


def git_path(worktree: Path, name: str) -> Path | None:
    """Where `$GIT_DIR/<name>` is for `worktree` (absolute); None when it is not a git worktree."""
    proc = _run(worktree, ["rev-parse", "--git-path", name])
    if proc.returncode != 0:
        return None
    path = Path(proc.stdout.decode().strip())
    return path if path.is_absolute() else worktree / path


def ls_tree(root: Path, rev: str, path: str = "") -> list[tuple[str, str, str]]:
    """(mode, sha, path) of the blobs under `path` at `rev`."""
    args = ["ls-tree", "-r", "-z", rev]
    if path:
        args += ["--", path]
    out = git(root, *args, trusted=True)
    rows = []
    for item in out.split("\0"):
        if not item:
            continue
        meta, name = item.split("\t", 1)
        mode, _type, sha = meta.split()
        rows.append((mode, sha, name))
    return rows


def is_dirty(worktree: Path) -> bool:
    """Uncommitted changes in `worktree`: staged, unstaged, or untracked files that are not ignored."""
    return bool(git(worktree, "status", "--porcelain", "-z", "--untracked-files=normal"))


def current_branch(root: Path) -> str | None:
    out = git(root, "symbolic-ref", "--quiet", "HEAD", check=False)
    return out.removeprefix("refs/heads/") if out else None
