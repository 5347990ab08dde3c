"""Where specs are read from: the working tree on disk, or a commit or tree in git."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from supervisor import repo

_SKIP = {".git", ".fac", "__pycache__", ".venv", "node_modules", ".pytest_cache"}


class Source(Protocol):
    """A tree of files: the working tree on disk, or a commit or tree in git."""

    label: str

    def files(self, prefix: str) -> list[str]: ...

    def read_many(self, paths: list[str]) -> dict[str, str]: ...


class DirSource:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.label = str(root)

    def files(self, prefix: str) -> list[str]:
        base = self.root / prefix if prefix not in ("", ".") else self.root
        out = []
        for d, dirs, names in os.walk(base):
            dirs[:] = sorted(x for x in dirs if x not in _SKIP)
            out += [(Path(d) / n).relative_to(self.root).as_posix() for n in names]
        return sorted(out)

    def read_many(self, paths: list[str]) -> dict[str, str]:
        out = {}
        for p in paths:
            try:
                out[p] = (self.root / p).read_text(encoding="utf-8", errors="replace")
            except OSError:
                pass
        return out


class GitSource:
    def __init__(self, root: Path, rev: str, label: str | None = None) -> None:
        self.root = root
        self.rev = rev
        self.label = label or rev

    def files(self, prefix: str) -> list[str]:
        path = "" if prefix in ("", ".") else prefix
        return [p for _mode, _sha, p in repo.ls_tree(self.root, self.rev, path)]

    def read_many(self, paths: list[str]) -> dict[str, str]:
        """Many blobs through one `git cat-file --batch`."""
        return repo.read_blobs(self.root, self.rev, paths)


def read(source: Source, path: str) -> str | None:
    return source.read_many([path]).get(path)


def md_files(source: Source, directory: str) -> list[str]:
    """The Markdown files directly in `directory` (not in its subdirectories)."""
    return [
        p for p in source.files(directory) if p.endswith(".md") and p.count("/") == directory.count("/") + 1
    ]
