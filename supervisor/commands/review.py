"""`fac llm-review`: the built-in judgment check."""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command("llm-review")
def llm_review() -> None:
    """The built-in judgment check: a model reviews the change against its delta and role rules.

    Use it as a check: [checks.review] run = "fac llm-review", kind = "judgment". Exit 0 pass,
    1 fail. Without ANTHROPIC_API_KEY it prints "skipped: no API key" and passes unless the check
    is required (required = true).
    """
    from supervisor import review

    sys.exit(review.main(Path.cwd()))
