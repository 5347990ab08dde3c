"""`fac demo`: the whole line, offline, as a story a user can watch."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from supervisor.errors import FacError


@click.command()
@click.option("--keep", is_flag=True, help="Leave the factory and its tmux server running to explore.")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Build the demo factory here (default: a new temp dir, removed afterwards).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def demo(keep: bool, directory: Path | None, as_json: bool) -> None:
    """Run the whole line offline: four scripted agents and erin (fac's built-in agent), the merge
    queue, real tmux and git.

    alice merges; bob is red, reads the failing test in his inbox, fixes and merges; carol and
    dave edit the same line: one merges, the other gets the conflict, merges main and merges; erin
    runs the anthropic runtime against the bundled fake Messages API (127.0.0.1, no key, no
    network), writes longest_word with a test and merges. Prints the story from `fac log`, main's
    history and a summary with tokens and the flow metrics of `fac report`.
    Uses a private tmux socket; exits 1 if the story did not happen as told.

    \b
    Examples:
      fac demo                     # about half a minute, then cleans up
      fac demo --keep --dir /tmp/d # leave the factory up and print how to attach
    """
    from supervisor import demo as demomod

    if directory is not None and directory.exists() and any(directory.iterdir()):
        raise FacError(f"{directory} is not empty", hint="pass a new or empty directory to --dir")
    sys.exit(demomod.main_entry(keep, directory, as_json))
