"""Specs: parsing statements, the spec lint (file:line and a fix for every problem), and `fac state`
with its drift, on real factories made by `fac init --sample` (real git, real pytest runs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import Result
from helpers import git
from queue_helpers import fac, human_commit, script_suite

from supervisor import specs
from supervisor.specs import Link

SUT = "system-under-construction"


def run_fac(*args: str) -> Result:
    """The real CLI in-process: these tests run many commands, and a subprocess costs more than each."""
    return fac(*args)


def fac_json(*args: str) -> Any:
    res = fac(*args, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


GOOD = """\
# Service

Prose outside a list is not a statement, whatever it says we should do.

- The service MUST answer GET /health with 200. {#health-endpoint} [check: tests::test_health]
- Responses SHOULD be JSON. Reason: every client parses them. [check: lint]
- The service MAY cache answers for a second.
  Reason: the data changes slowly. [check: tests, lint]
- `parse(text)` MUST NOT raise on empty input. [check: tests::tests/test_p.py::TestParse::test_empty]
- a list item without a keyword is just a note

```
- code MUST be ignored
```
"""


def test_statements_are_parsed_with_ids_keywords_links_reasons_and_lines() -> None:
    f = specs.parse("specs/current/service.md", GOOD)

    assert f.problems == []
    assert [(s.id, s.keyword, s.line) for s in f.statements] == [
        ("health-endpoint", "MUST", 5),
        ("responses-json", "SHOULD", 6),
        ("service-cache-answers-second", "MAY", 7),
        ("parse-text-raise-empty-input", "MUST NOT", 9),
    ]
    health, json_, cache, parse = f.statements
    assert health.explicit_id and not json_.explicit_id
    assert health.text == "The service MUST answer GET /health with 200."
    assert health.links == (Link("tests", "test_health"),)
    assert json_.reason == "every client parses them." and json_.links == (Link("lint"),)
    assert cache.end_line == 8 and cache.reason == "the data changes slowly."
    assert cache.links == (Link("tests"), Link("lint"))
    assert parse.links == (Link("tests", "tests/test_p.py::TestParse::test_empty"),)


def test_derived_ids_are_stable_across_edits_of_other_lines() -> None:
    before = {s.id: s.line for s in specs.parse("a.md", GOOD).statements}
    edited = GOOD.replace("# Service\n", "# Service\n\nA new paragraph.\n\n- Logs MUST be UTF-8.\n")
    after = {s.id: s.line for s in specs.parse("a.md", edited).statements}

    assert set(before) < set(after)
    assert all(after[i] == before[i] + 4 for i in before)


def test_test_links_match_pytest_names() -> None:
    assert specs.test_matches("test_x", "tests/test_a.py", "test_x")
    assert specs.test_matches("TestC::test_x", "tests/test_a.py", "TestC.test_x")
    assert specs.test_matches("tests/test_a.py::test_x", "sut/tests/test_a.py", "test_x")
    assert not specs.test_matches("test_a.py::test_x", "tests/test_b.py", "test_x")
    assert not specs.test_matches("test_x", "tests/test_a.py", "test_xy")


BAD_SPEC = """\
# Bad

- Results should be cached.
- Output SHOULD be short.
- `words` MUST lower-case. {#dup} [check: nosuch]
- `words` MUST keep the order. {#dup} [check: tests::test_does_not_exist]
- It MUST work and MAY fail. Reason: nothing is perfect.
- Ids MUST be tidy. {#Bad_Id}
- A note with a link but no keyword. [check: tests]
"""

BAD_DELTA = """\
+++
id = "0002"
title = "Bad"
status = "started"
color = "red"
+++
- Chars MUST be counted. [check: tests::test_written_later]
"""

BROKEN_DELTA = """\
+++
id = "0003"
title = not quoted
+++
- Something MUST change.
"""


def test_lint_reports_every_problem_with_file_line_and_a_fix(factory: Path) -> None:
    (factory / "specs/current/bad.md").write_text(BAD_SPEC)
    (factory / "specs/deltas/0001-bad.md").write_text(BAD_DELTA)
    (factory / "specs/deltas/0003-broken.md").write_text(BROKEN_DELTA)

    proc = run_fac("spec", "lint", "--json")

    assert proc.exit_code == 1, proc.output
    report = json.loads(proc.stdout)
    assert not report["ok"]
    found = {(e["path"], e["line"], e["code"]) for e in report["errors"]}
    bad, delta, broken = "specs/current/bad.md", "specs/deltas/0001-bad.md", "specs/deltas/0003-broken.md"
    assert found == {
        (bad, 3, "keyword-case"),  # lower-case "should" used as a requirement
        (bad, 4, "reason"),  # SHOULD without a Reason:
        (bad, 5, "link"),  # no check named nosuch
        (bad, 6, "duplicate"),  # {#dup} twice
        (bad, 6, "link"),  # current specs link only tests that exist
        (bad, 7, "keyword-mix"),
        (bad, 8, "id"),
        (bad, 9, "keyword"),  # a link without a keyword
        (delta, 2, "delta"),  # id 0002 in file 0001-...
        (delta, 4, "delta"),  # status "started"
        (delta, 5, "delta"),  # unknown key color
        (broken, 3, "delta"),  # not TOML, at the line TOML names
    }
    assert all(e["hint"] for e in report["errors"])
    by_line = {(e["path"], e["line"], e["code"]): e for e in report["errors"]}
    assert "'should' is not in capitals" in by_line[(bad, 3, "keyword-case")]["message"]
    assert "write SHOULD" in by_line[(bad, 3, "keyword-case")]["hint"]
    assert "Reason:" in by_line[(bad, 4, "reason")]["hint"]
    assert "also at specs/current/bad.md:5" in by_line[(bad, 6, "duplicate")]["message"]
    assert "use one of: tests" in by_line[(bad, 5, "link")]["hint"]
    # A delta may link a test that its worker has yet to write; current specs may not.
    assert not any("test_written_later" in e["message"] for e in report["errors"])

    text = run_fac("spec", "lint")
    assert text.exit_code == 1
    assert "specs/current/bad.md:3: 'should' is not in capitals" in text.stdout
    assert "\n  fix: write SHOULD" in text.stdout


def test_the_sample_specs_lint_clean_and_match_the_sample_with_no_drift(factory: Path) -> None:
    assert run_fac("spec", "lint").exit_code == 0
    assert fac_json("spec", "lint", "--ref", "main")["ok"]

    state = fac_json("state")

    assert state["ok"] and state["drift"] == [] and state["lint"] == []
    assert state["counts"] == {"pass": 4, "fail": 0, "unverified": 1}
    statuses = {r["id"]: r["status"] for r in state["current"]}
    assert statuses["words-lower-cased-in-order"] == "pass"
    assert statuses["stdlib-only"] == "unverified"  # honest: no check verifies it
    assert state["ran"] == ["tests"]
    # The same main again: every answer comes from the store.
    assert fac_json("state")["ran"] == []
    out = run_fac("state")
    assert out.exit_code == 0
    assert "drift: none" in out.stdout and "4 pass, 0 fail, 1 unverified" in out.stdout


def test_drift_is_detected_when_a_linked_test_fails_on_main_and_cleared_when_it_passes(factory: Path) -> None:
    assert fac_json("state")["ok"]
    lib = f"{SUT}/textstats/__init__.py"
    good = (factory / lib).read_text()
    human_commit(factory, {lib: good.replace("[w.lower() for w in", "[w for w in")}, "human: a bug")

    proc = run_fac("state", "--json")

    assert proc.exit_code == 1
    state = json.loads(proc.stdout)
    assert [d["id"] for d in state["drift"]] == ["words-lower-cased-in-order"]
    [drift] = state["drift"]
    assert drift["path"] == "specs/current/textstats.md" and drift["line"] == 8
    assert drift["failed"][0]["link"] == "tests::test_words_are_lower_cased_in_order"
    assert "test_words_are_lower_cased_in_order" in drift["failed"][0]["detail"]
    others = {r["id"]: r["status"] for r in state["current"] if r["id"] != drift["id"]}
    assert others["top-words-ties-alphabetical"] == "pass"  # per-test outcomes, not the whole check
    text = run_fac("state")
    assert text.exit_code == 1
    assert "DRIFT: 1 statement(s)" in text.stdout
    assert "specs/current/textstats.md:8 {#words-lower-cased-in-order}" in text.stdout

    human_commit(factory, {lib: good}, "human: fix the bug")

    fixed = fac_json("state")
    assert fixed["ok"] and fixed["drift"] == []
    # Main's tree is the original one again: the first run's results answer it.
    assert fixed["ran"] == []


def test_check_level_links_and_links_to_missing_checks(factory: Path) -> None:
    script_suite(
        factory,
        {
            "docs": "#!/bin/sh\nexit 0\n",
            "changelog": "#!/bin/sh\necho 'CHANGELOG.md has no entry for 0.2'\nexit 1\n",
        },
    )
    spec = (
        "# Release\n\n"
        "- The docs MUST build. {#docs-build} [check: docs]\n"
        "- The changelog MUST list every release. {#changelog} [check: changelog]\n"
        "- Ghosts MUST NOT haunt. {#ghost} [check: ghost]\n"
    )
    human_commit(factory, {"specs/current/textstats.md": spec}, "human: release specs")

    proc = run_fac("state", "--json")

    assert proc.exit_code == 1
    data = json.loads(proc.stdout)
    assert {r["id"]: r["status"] for r in data["current"]} == {
        "docs-build": "pass",
        "changelog": "fail",
        "ghost": "fail",
    }
    drift = {d["id"]: d["failed"][0]["detail"] for d in data["drift"]}
    assert "CHANGELOG.md has no entry for 0.2" in drift["changelog"]
    assert "no check named 'ghost'" in drift["ghost"]
    assert [(e["line"], e["code"]) for e in data["lint"]] == [(5, "link")]
    assert sorted(data["ran"]) == ["changelog", "docs"]
    assert git(factory, "status", "--porcelain") == ""


def test_fac_spec_alone_lists_the_spec_files_like_its_siblings(factory: Path) -> None:
    listed = fac_json("spec")
    on_disk = sorted(str(p.relative_to(factory)) for p in (factory / "specs/current").glob("*.md"))
    assert sorted(f["path"] for f in listed["current"]) == on_disk and on_disk
    parsed = {f.path: [s.id for s in f.statements] for f in specs.load_current(specs.DirSource(factory))}
    assert {f["path"]: f["statements"] for f in listed["current"]} == parsed
    assert [d["id"] for d in listed["deltas"]] == [d["id"] for d in fac_json("delta")]

    text = run_fac("spec")
    assert text.exit_code == 0, text.output
    assert text.stdout.splitlines()[0].split() == ["SPEC", "STATEMENTS"]
    assert any(line.startswith(on_disk[0]) for line in text.stdout.splitlines())
    assert "fac spec lint" in text.stdout
    assert run_fac("spec", "lint").exit_code == 0  # the old spelling still works


def test_the_specs_package_loads_its_parts_on_first_use_and_lint_is_the_function() -> None:
    """`supervisor.specs` imports a submodule when one of its names is first used (an agent's
    context reads specs without the lint's imports); the function `lint` is never shadowed by the
    submodule of the same name, whichever name came first."""
    import subprocess
    import sys

    code = (
        "import sys, supervisor.specs as s\n"
        "assert 'supervisor.specs.lint' not in sys.modules\n"
        "s.GitSource, s.load_current\n"
        "assert 'supervisor.specs.lint' not in sys.modules and 'supervisor.guards' not in sys.modules\n"
        "s.lint_guard\n"
        "assert callable(s.lint) and s.lint.__name__ == 'lint', s.lint\n"
        "from supervisor.specs import Catalog, lint\n"
        "assert callable(lint)\n"
        "try:\n"
        "    s.nothing\n"
        "except AttributeError as e:\n"
        "    assert 'nothing' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
