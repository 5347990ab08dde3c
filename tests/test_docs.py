"""The documents a clone has: every link and every named document resolves inside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
PLACEHOLDERS = {"NAME.md"}  # roles/NAME.md: a name a user picks
NAMED_DOC = re.compile(r"(?<![\w/.-])((?:\.\./|[\w-]+/)*[A-Z][A-Z_]+\.md)\b")


def tracked(*patterns: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / p for p in out.stdout.split()]


def test_every_relative_link_in_the_docs_resolves_in_the_repository() -> None:
    docs = tracked("*.md")
    assert REPO / "README.md" in docs
    for doc in docs:
        for target in LINK.findall(doc.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            path = (doc.parent / target).resolve()
            assert path.is_relative_to(REPO), f"{doc.name} links {target}, outside the repository"
            assert path.exists(), f"{doc.name} links {target}, which a clone does not have"


def test_every_document_named_in_docs_config_and_code_exists() -> None:
    # e.g. "the layers of DESIGN.md": a design document outside the repository, which a clone lacks.
    files = tracked("*.md", "*.toml", "supervisor/*.py", "supervisor/**/*.py")
    for f in files:
        for name in NAMED_DOC.findall(f.read_text(encoding="utf-8")):
            if Path(name).name in PLACEHOLDERS:
                continue
            found = (f.parent / name).exists() or (REPO / name).exists() or any(REPO.rglob(Path(name).name))
            assert found and not name.startswith("../"), (
                f"{f.relative_to(REPO)} names {name}, not in the repository"
            )
