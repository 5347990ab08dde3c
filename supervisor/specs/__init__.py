"""Specs: the file formats of `specs/current` (statements) and `specs/deltas` (delta files), and their lint.

- `statements`: RFC 2119 statements in Markdown, their ids and check links;
- `deltafiles`: delta files (front matter + statements): parse, render, scaffold, fold;
- `source`: where they are read from (a directory, or a tree in git);
- `lint`: every problem, with file:line and a fix, and the queue's `guard:spec-lint`.

The lifecycle of a delta (approve, start, merged, done) is `supervisor/deltas.py`, a service above.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Each name from the submodule that defines it, imported on first use: a command that only reads
# specs (`fac spawn` writing an agent's context) does not pay for the lint and the guards it uses.
_HOME = {
    **dict.fromkeys(("Catalog", "check_links", "lint", "lint_guard", "lint_source", "test_matches"), "lint"),
    **dict.fromkeys(("DirSource", "GitSource", "Source", "md_files", "read"), "source"),
    **dict.fromkeys(
        (
            "CURRENT",
            "DELTAS",
            "ID_RE",
            "KEYWORDS",
            "NEEDS_REASON",
            "Link",
            "LintError",
            "SpecFile",
            "Statement",
            "derive_id",
            "load_current",
            "parse",
        ),
        "statements",
    ),
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(f"{__name__}.{home}")
    # Every name of that submodule at once: importing `lint` also set this package's attribute
    # `lint` to the submodule, which the function of that name must replace again.
    globals().update({n: getattr(module, n) for n, h in _HOME.items() if h == home})
    return globals()[name]


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
