"""The factory on disk: finding its root, and `fac init` scaffolding a new one."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor import config as configmod
from supervisor import locate
from supervisor.errors import FacError
from supervisor.tmux import PaneInfo, Tmux

if TYPE_CHECKING:  # sqlite3 is imported only by commands that open the store
    from supervisor.store import Store, Worker

WORKTREES = Path(".fac") / "worktrees"
GITIGNORE_LINE = ".fac/"


def defaults_dir() -> Path:
    """Where the defaults `fac init` copies live: inside the wheel, or this repository's root."""
    packaged = Path(__file__).parent / "_defaults"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent


def find_root(start: Path | None = None) -> Path:
    """The factory root: $FAC_ROOT, else the nearest directory upwards holding factory.toml.

    A worker's worktree (`.fac/worktrees/<name>`) has its own copy of factory.toml; the root is
    the directory that holds `.fac/`, not the worktree (locate.nearest_root).
    """
    env = os.environ.get("FAC_ROOT")
    if env:
        root = Path(env)
        if not (root / configmod.CONFIG_NAME).is_file():
            raise FacError(f"FAC_ROOT={env} is not a factory (no factory.toml there)", hint="unset FAC_ROOT")
        return root.resolve()
    here = (start or Path.cwd()).resolve()
    found = locate.nearest_root(str(here))
    if found is not None:
        return Path(found)
    raise FacError(
        f"not inside a factory: no factory.toml in {here} or any parent",
        hint="cd into a factory, or create one with `fac init DIR`",
    )


@dataclass
class InitReport:
    root: Path
    created: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    new_repo: bool = False
    committed: str | None = None
    not_committed: list[str] = field(default_factory=list)  # the user's own files, left for them to commit


# What every factory gets: (source under defaults_dir(), destination under the factory root).
LAYOUT = [
    ("roles", "roles"),
    ("checks/README.md", "checks/README.md"),
    ("specs/README.md", "specs/README.md"),
    ("project-container", "project-container"),
]
SAMPLE = "system-under-construction"


def init(target: Path, *, sample: bool = False) -> InitReport:
    """Create the factory layout in `target`; never overwrite a file that is already there."""
    from supervisor import repo

    repo.require_git()
    target = target.resolve()
    if target.exists() and not target.is_dir():
        raise FacError(f"{target} exists and is not a directory", hint="pick another path")
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / ".fac-init-probe"
        probe.touch()
        probe.unlink()
    except OSError as e:  # /proc/x, a read-only mount, no permission, a full disk
        raise FacError(
            f"cannot create a factory in {target}: {e.strerror or e}",
            hint="pick a directory you can write to, e.g. `fac init ~/myfactory`",
        ) from None
    report = InitReport(root=target)
    is_repo = (target / ".git").exists()
    if not is_repo:
        inside = repo.git(target, "rev-parse", "--show-toplevel", check=False)
        if inside and Path(inside).resolve() != target:
            raise FacError(
                f"{target} is inside the git repository {inside}",
                hint=f"run `fac init {inside}` to make that repository a factory,"
                " or pick a directory outside it",
            )
        repo.git(target, "init", "-q", "-b", "main")
        report.new_repo = True
    branch = repo.current_branch(target) or "main"

    src = defaults_dir()
    for s, d in LAYOUT:
        _copy_missing(src / s, target / d, target, report)
    if sample:
        _copy_missing(src / SAMPLE, target / SAMPLE, target, report)
        # The sample's specs: what textstats does now, each statement linked to its test.
        for spec in sorted((src / "specs" / "current").glob("*.md")):
            _copy_missing(spec, target / "specs" / "current" / spec.name, target, report)
    else:
        _write_missing(
            target / SAMPLE / "README.md",
            "# The system under construction\n\nDescribe the system here: what it is for, how to build it and"
            " how to run its tests.\nWorkers may change only this directory.\n",
            target,
            report,
        )
    _write_missing(target / "specs" / "current" / ".gitkeep", "", target, report)
    _write_missing(target / "specs" / "deltas" / ".gitkeep", "", target, report)
    toml = configmod.DEFAULT_TOML.replace('main = "main"', f'main = "{branch}"')
    if sample:
        toml += configmod.SAMPLE_CHECKS_TOML
    _write_missing(target / configmod.CONFIG_NAME, toml, target, report)
    _ensure_gitignore(target, report)

    has_commits = repo.rev_parse(target, "HEAD") is not None
    if not has_commits:
        # Only what init wrote: files the directory already held are the user's to commit.
        paths = [c.removesuffix(" (added .fac/)") for c in report.created]
        repo.git(target, "add", "--", *paths)
        repo.git(target, "commit", "-q", "-m", "fac init: factory layout", env=repo.identity_env(target))
        report.committed = repo.rev_parse(target, "HEAD")
        left = repo.git(target, "ls-files", "--others", "--exclude-standard", "--directory")
        report.not_committed = [p for p in left.splitlines() if p]
    return report


def _copy_missing(src: Path, dst: Path, root: Path, report: InitReport) -> None:
    if src.is_dir():
        for p in sorted(src.rglob("*")):
            if p.is_file() and not _ignored(p.relative_to(src)):
                _copy_missing(p, dst / p.relative_to(src), root, report)
        return
    rel = str(dst.relative_to(root))
    if dst.exists():
        report.kept.append(rel)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst)
    report.created.append(rel)


def _ignored(rel: Path) -> bool:
    return any(part in ("__pycache__", ".pytest_cache") or part.endswith(".pyc") for part in rel.parts)


def _write_missing(path: Path, text: str, root: Path, report: InitReport) -> None:
    rel = str(path.relative_to(root))
    if path.exists():
        report.kept.append(rel)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    report.created.append(rel)


def _ensure_gitignore(root: Path, report: InitReport) -> None:
    path = root / ".gitignore"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    if any(line.strip() in (".fac", ".fac/", "/.fac", "/.fac/") for line in lines):
        report.kept.append(".gitignore")
        return
    sep = "" if not lines or path.read_text(encoding="utf-8").endswith("\n") else "\n"
    with path.open("a", encoding="utf-8") as f:
        f.write(f"{sep}# fac runtime state (store, worktrees, logs)\n{GITIGNORE_LINE}\n")
    report.created.append(".gitignore" if not lines else ".gitignore (added .fac/)")


class Factory:
    """An opened factory: its root, configuration and store, each loaded on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._config: configmod.Config | None = None
        self._store: Store | None = None
        self._tmux: Tmux | None = None

    @classmethod
    def find(cls, start: Path | None = None) -> Factory:
        return cls(find_root(start))

    @property
    def config(self) -> configmod.Config:
        if self._config is None:
            self._config = configmod.load(self.root)
        return self._config

    @property
    def store(self) -> Store:
        if self._store is None:
            from supervisor.store import Store

            self._ensure_runtime_dir()
            self._store = Store.open(self.root)
        return self._store

    def worker(self, name: str) -> Worker:
        """The stored worker `name`, or the one error every command gives for a name it does not know."""
        w = self.store.worker(name)
        if w is None:
            raise FacError(f"no worker named {name!r}", hint=f"workers: {self.worker_names()}")
        return w

    def worker_names(self) -> str:
        return ", ".join(x.name for x in self.store.workers()) or "none"

    @property
    def tmux(self) -> Tmux:
        if self._tmux is None:
            self._tmux = Tmux()
        return self._tmux

    @tmux.setter
    def tmux(self, tmux: Tmux) -> None:
        """A long-lived process (the supervisor) sets a `tmux.LiveTmux`, which pays for libtmux once."""
        self._tmux = tmux

    @property
    def session(self) -> str:
        return self.config.session

    def session_running(self) -> bool:
        """Whether this factory's session runs; a session of that name that another factory (or a
        human) created is never adopted: it raises instead."""
        owner = self.tmux.session_owner(self.session)
        if not owner.exists:
            return False
        if owner.root != str(self.root):
            whose = f"the factory at {owner.root}" if owner.root else "someone else (fac did not create it)"
            raise FacError(
                f"tmux session {self.session} belongs to {whose}, not to {self.root}",
                hint='give this factory its own session: set [tmux] session = "NAME" in factory.toml',
            )
        return True

    def new_window(
        self, name: str, cwd: str, argv: list[str], env: dict[str, str], log: str | None = None
    ) -> tuple[str, str]:
        """A window in this factory's own session (created, and marked as ours, when missing)."""
        self.session_running()
        return self.tmux.new_window(self.session, name, cwd, argv, env, log=log, owner=str(self.root))

    def panes(self) -> list[PaneInfo]:
        """The panes of this factory's own session (none when it is down); refuses another's session."""
        return self.tmux.panes(self.session) if self.session_running() else []

    @property
    def main(self) -> str:
        return self.config.main

    @property
    def fac_dir(self) -> Path:
        return self.root / ".fac"

    def worker_at(self, path: Path) -> str | None:
        """The worker whose worktree holds `path` (`.fac/worktrees/<name>/...`), if any."""
        try:
            rel = path.resolve().relative_to((self.root / WORKTREES).resolve())
        except ValueError:
            return None
        return rel.parts[0] if rel.parts else None

    def worktree_path(self, worker: str) -> Path:
        return self.root / WORKTREES / worker

    def run_dir(self, worker: str) -> Path:
        return self.fac_dir / "runs" / worker

    def _ensure_runtime_dir(self) -> None:
        d = self.fac_dir
        ignore = d / ".gitignore"
        if not ignore.exists():
            # exist_ok: several `fac` processes may create .fac/ at once in a fresh factory.
            d.mkdir(parents=True, exist_ok=True)
            # Keep .fac/ out of git even in a repository whose .gitignore does not list it.
            ignore.write_text("*\n", encoding="utf-8")
            # Made now, before any watcher of .fac/ starts: the spawner's socket lives there.
            (d / "spawner").mkdir(exist_ok=True)
