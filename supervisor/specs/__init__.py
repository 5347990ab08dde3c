"""Specs: the file formats of `specs/current` (statements) and `specs/deltas` (delta files), and their lint.

- `statements`: RFC 2119 statements in Markdown, their ids and check links;
- `deltafiles`: delta files (front matter + statements): parse, render, scaffold, fold;
- `source`: where they are read from (a directory, or a tree in git);
- `lint`: every problem, with file:line and a fix, and the queue's `guard:spec-lint`.

The lifecycle of a delta (approve, start, merged, done) is `supervisor/deltas.py`, a service above.
"""

from supervisor.specs.lint import Catalog, check_links, lint, lint_guard, lint_source, test_matches
from supervisor.specs.source import DirSource, GitSource, Source, md_files, read
from supervisor.specs.statements import (
    CURRENT,
    DELTAS,
    ID_RE,
    KEYWORDS,
    NEEDS_REASON,
    Link,
    LintError,
    SpecFile,
    Statement,
    derive_id,
    load_current,
    parse,
)

__all__ = [
    "CURRENT",
    "DELTAS",
    "ID_RE",
    "KEYWORDS",
    "NEEDS_REASON",
    "Catalog",
    "DirSource",
    "GitSource",
    "Link",
    "LintError",
    "Source",
    "SpecFile",
    "Statement",
    "check_links",
    "derive_id",
    "lint",
    "lint_guard",
    "lint_source",
    "load_current",
    "md_files",
    "parse",
    "read",
    "test_matches",
]
