"""Roles: one markdown file each, TOML front matter between +++ lines, then the prompt."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import assert_usage_error, fac_json, fac_ok, run_fac, spawn

from supervisor import roles
from supervisor.errors import FacError

DEFAULT_ROLES = {"worker", "reviewer", "fixer", "planner"}


def test_fac_roles_lists_the_default_roles(factory: Path) -> None:
    listed = fac_json("roles", cwd=factory)
    assert {r["name"] for r in listed} == DEFAULT_ROLES
    worker = next(r for r in listed if r["name"] == "worker")
    assert worker["runtime"] == "command"
    assert worker["writable"] == ["system-under-construction/**"]
    assert worker["path"] == str(factory / "roles" / "worker.md")
    assert all(r["description"] for r in listed)

    table = fac_ok("roles", cwd=factory).stdout
    assert table.splitlines()[0].split() == ["ROLE", "RUNTIME", "WRITABLE", "MAX", "DESCRIPTION"]
    for name in DEFAULT_ROLES:
        assert any(line.startswith(name + " ") for line in table.splitlines()), name


def test_default_roles_parse_with_prompts(factory: Path) -> None:
    found = roles.load_all(factory)
    assert set(found) == DEFAULT_ROLES
    assert "system-under-construction/" in found["worker"].prompt
    assert found["planner"].writable == ()
    assert found["fixer"].max_instances == 1


def test_roles_new_scaffolds_a_role_that_parses_and_can_be_spawned(factory: Path) -> None:
    proc = fac_ok("roles", "new", "tester", "--description", 'Writes "tests" = first', cwd=factory)
    path = factory / "roles" / "tester.md"
    assert str(path) in proc.stdout

    role = roles.parse(path, path.read_text())
    assert role.name == "tester"
    assert role.description == 'Writes "tests" = first'
    assert role.runtime == "command"
    assert role.writable == ("system-under-construction/**",)
    assert "tester" in role.prompt
    assert "tester" in {r["name"] for r in fac_json("roles", cwd=factory)}

    # a new role needs no code: it can be spawned right away
    assert spawn(factory, "t1", "true", role="tester")["role"] == "tester"


def test_roles_new_refuses_an_existing_role_and_a_bad_name(factory: Path) -> None:
    before = (factory / "roles" / "worker.md").read_text()
    assert_usage_error(run_fac("roles", "new", "worker", cwd=factory), "already exists")
    assert (factory / "roles" / "worker.md").read_text() == before
    assert_usage_error(run_fac("roles", "new", "Bad Name", cwd=factory), "invalid role name")
    assert not list((factory / "roles").glob("Bad*"))


BAD_ROLES = {
    "no front matter": ("just a prompt\n", "starts with a `+++` line"),
    "unclosed": ("+++\nname = 'bad'\nthe prompt\n", "not closed"),
    "not toml": ("+++\nname = \n+++\nprompt\n", "not valid TOML"),
    "unknown key": ("+++\nmodel = 'x'\n+++\nprompt\n", "unknown front matter key"),
    "unknown runtime": ("+++\nruntime = 'gpt'\n+++\nprompt\n", "runtime 'gpt' is unknown"),
    "name differs": ("+++\nname = 'other'\n+++\nprompt\n", "differs from the file name"),
    "writable not a list": ("+++\nwritable = 'src/**'\n+++\nprompt\n", "writable must be a list"),
    "negative max": ("+++\nmax_instances = -1\n+++\nprompt\n", "max_instances"),
}


@pytest.mark.parametrize("text,needle", BAD_ROLES.values(), ids=BAD_ROLES.keys())
def test_a_bad_role_file_is_reported_with_its_file_name(factory: Path, text: str, needle: str) -> None:
    (factory / "roles" / "bad.md").write_text(text)
    with pytest.raises(FacError, match="bad.md") as info:
        roles.load_all(factory)
    assert needle in info.value.message


def test_fac_roles_with_a_bad_role_file_exits_2_naming_the_file(factory: Path) -> None:
    (factory / "roles" / "bad.md").write_text("+++\nname = \n+++\nprompt\n")
    assert_usage_error(run_fac("roles", cwd=factory), "bad.md", "not valid TOML")


def test_one_broken_role_file_does_not_block_the_other_roles(factory: Path) -> None:
    # It used to: every spawn parsed every role file, so bad.md stopped spawns of worker too.
    (factory / "roles" / "bad.md").write_text("+++\nname = \n+++\nprompt\n")
    assert roles.get(factory, "worker").name == "worker"
    assert spawn(factory, "w1")["name"] == "w1"
    assert_usage_error(
        run_fac("spawn", "bad", "--no-up", "--cmd", "true", cwd=factory), "bad.md", "not valid TOML"
    )
    proc = run_fac("spawn", "wizard", "--no-up", "--cmd", "true", cwd=factory)
    assert_usage_error(proc, "unknown role 'wizard'", "bad, fixer, planner")


def test_spawning_an_unknown_role_lists_the_known_roles(factory: Path) -> None:
    proc = run_fac("spawn", "wizard", "--no-up", "--cmd", "true", cwd=factory)
    assert_usage_error(proc, "unknown role 'wizard'", "known roles: fixer, planner, reviewer, worker")
    assert "fac roles new wizard" in proc.stderr


@pytest.mark.parametrize(
    ("runtime", "command", "expected"),
    [
        (None, None, None),  # the role's runtime
        ("claude", None, "claude"),
        (None, "bash ./agent.sh", "command"),
        ("command", "bash ./agent.sh", "command"),
    ],
)
def test_a_command_implies_the_command_runtime(
    runtime: str | None, command: str | None, expected: str | None
) -> None:
    assert roles.runtime_for(runtime, command) == expected


@pytest.mark.parametrize("runtime", ["claude", "anthropic"])
def test_a_command_cannot_run_in_another_runtime(runtime: str) -> None:
    with pytest.raises(
        FacError, match=f"--cmd runs the command runtime; it cannot be combined with --runtime {runtime}"
    ):
        roles.runtime_for(runtime, "true")


def test_fac_roles_ls_is_fac_roles(factory: Path) -> None:
    assert fac_json("roles", "ls", cwd=factory) == fac_json("roles", cwd=factory)
    assert fac_ok("roles", "ls", cwd=factory).stdout == fac_ok("roles", cwd=factory).stdout
