"""The queue's own git is inert: whatever a worker plants in the shared `.git` (hooks, a hooks path,
drivers, filters, fsmonitor, an identity, nested includes), no program of its runs in the queue's
process, fac's own commits never carry the planted name, and the honest merge still lands. A
hostile scripted worker plants them from its real pane, through the real queue (`fac queue run`).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import fac_ok, git, run_fac, wait_for
from queue_helpers import SUT, entries, human_commit

from supervisor.factory import Factory

CODE = f"{SUT}/textstats/__init__.py"


def hostile_script(marker: Path, plants: Path) -> str:
    """What the worker runs in its pane: an honest change; then, with its own git work done (so
    nothing it plants runs for itself), the plants in the factory's git directory (it is not
    isolated: in its sandbox that directory is out of reach, tests/test_isolation.py)."""
    hook = f'#!/bin/sh\necho "$0 ran in $PPID" >> {marker}\n'
    run = f"sh -c 'echo ran >> {marker}; cat'"
    return f"""set -e
printf '\\n\\nVERSION = "0.1"\\n' >> {CODE}
git add -A && git commit -qm "hostile: a version"
common="$FAC_ROOT/.git"
mkdir -p "$common/hooks" "$common/info" {plants}/hooks
for h in reference-transaction post-checkout post-index-change post-merge pre-auto-gc post-commit; do
  printf '%s' '{hook}' > "$common/hooks/$h"; cp "$common/hooks/$h" {plants}/hooks/$h
  chmod +x "$common/hooks/$h" {plants}/hooks/$h
done
printf '%s' '{hook}' > {plants}/monitor && chmod +x {plants}/monitor
# Two levels of includes: the second defines the drivers, so reading only the shared config misses them.
printf '[include]\\n\\tpath = {plants}/deeper\\n' > {plants}/first
cat > {plants}/deeper <<'CFG'
[filter "lie"]
\tclean = "{run}"
\tsmudge = "{run}"
\tprocess = "{run}"
[filter "lfs"]
\tsmudge = "{run}"
[diff "lie"]
\ttextconv = "{run}"
\tcommand = "{run}"
[merge "lie"]
\tdriver = "{run}"
[core]
\tfsmonitor = {plants}/monitor
\thooksPath = {plants}/hooks
[diff]
\texternal = {plants}/monitor
[gc]
\tauto = 1
CFG
git --git-dir="$common" config include.path {plants}/first
git --git-dir="$common" config user.name "Mallory Human"
git --git-dir="$common" config user.email mallory@example.com
echo '* diff=lie merge=lie' > "$common/info/attributes"
echo planted > {plants}/done
"""


def test_what_a_worker_plants_in_the_shared_git_never_runs_in_the_queue(
    factory: Path, tmp_path: Path, tmux_socket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker, plants = tmp_path / "ran", tmp_path / "plants"
    plants.mkdir()
    # The human's own files go through git-lfs's filter: main selects `filter=lfs` (the worker then
    # redefines that filter, two includes deep).
    human_commit(factory, {f"{SUT}/.gitattributes": "*.dat filter=lfs\n", f"{SUT}/data.dat": "x\n"})
    script = tmp_path / "hostile.sh"
    script.write_text(hostile_script(marker, plants))
    from supervisor import workers

    monkeypatch.setenv("FAC_SANDBOX", "none")
    workers.spawn(Factory(factory), "worker", name="mallory", command=f"sh {script}")
    monkeypatch.delenv("FAC_SANDBOX")
    wait_for(lambda: (plants / "done").exists(), timeout=60, message="the worker to plant its programs")
    fac_ok("submit", "--worker", "mallory", cwd=factory)  # fetched from its repository, queued
    assert entries(factory)["mallory"].state == "queued"
    assert not marker.exists(), "the worker's own git ran a plant: the test would prove nothing"
    main_before = (factory / ".git" / "refs" / "heads" / "main").read_text().strip()

    # The real queue, as `fac up` runs it, with no identity in its environment (a fresh machine).
    no_identity = {v: None for v in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME")}
    proc = run_fac("queue", "run", "--once", env={**no_identity, "GIT_COMMITTER_EMAIL": None}, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    assert not marker.exists(), "a planted program ran on the trusted side:\n" + marker.read_text()
    assert entries(factory)["mallory"].state == "merged"  # the honest merge still lands
    show = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"]
    merged = subprocess.run(
        [*show, "log", "-1", "--format=%H %an <%ae> / %cn <%ce>", "main"],
        cwd=factory,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert merged[0] != main_before
    who = " ".join(merged[1:])
    assert "Mallory" not in who and "mallory" not in who, who  # fac's own merge commit: fac's name
    assert who == "fac <fac@localhost> / fac <fac@localhost>", who
    code = subprocess.run(
        [*show, "cat-file", "blob", f"main:{CODE}"], cwd=factory, capture_output=True, text=True, check=True
    ).stdout
    assert 'VERSION = "0.1"' in code
    # The plants are live: plain git, as a worker's or a human's shell runs it, runs them.
    git(factory, "status", "--porcelain")
    assert marker.exists()
