"""factory.toml: validation errors name the key and what was expected; valid checks parse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import assert_usage_error, fac_json, fac_ok, run_fac, session_of

from supervisor import config
from supervisor.config import CheckDef, Config
from supervisor.errors import FacError

BAD_CONFIGS = {
    "unknown section": ("[bogus]\nx = 1\n", ["unknown section [bogus]", "[queue]"]),
    "unknown key": ("[queue]\nmax_bach = 3\n", ["unknown key [queue] max_bach", "max_batch"]),
    "unknown check key": ('[checks.tests]\nrun = "true"\nretry = 2\n', ["[checks.tests] retry", "timeout"]),
    "wrong type": ('[queue]\nmax_batch = "16"\n', ["[queue] max_batch", "an integer >= 1", "'16'"]),
    "zero batch": ("[queue]\nmax_batch = 0\n", ["[queue] max_batch", "an integer >= 1", "got 0"]),
    "bool as int": ("[queue]\nretries = true\n", ["[queue] retries", "integer"]),
    "bad stage": ('[checks.tests]\nrun = "true"\nstage = "sometimes"\n', ["[checks.tests] stage", '"inner"']),
    "negative timeout": ('[checks.tests]\nrun = "true"\ntimeout = -1\n', ["[checks.tests] timeout", "> 0"]),
    "bad kind": ('[checks.tests]\nrun = "true"\nkind = "vibes"\n', ["[checks.tests] kind", "judgment"]),
    "empty run": ('[checks.tests]\nrun = ""\n', ["[checks.tests] run", "a command"]),
    "missing run": ('[checks.tests]\ncwd = "."\n', ["[checks.tests] has no `run`"]),
    "bad env": (
        '[checks.tests]\nrun = "true"\nenv = { A = 1 }\n',
        ["[checks.tests] env", "table of strings"],
    ),
    "bad branch": ('[factory]\nmain = "my main"\n', ["[factory] main", "git branch name"]),
    "not a bool": ('[queue]\nverify_main = "yes"\n', ["[queue] verify_main", "true or false"]),
    "empty session": ('[tmux]\nsession = ""\n', ["[tmux] session", "non-empty string"]),
    "session with colon": ('[tmux]\nsession = "a:b"\n', ["[tmux] session", "without ':' or '.'"]),
    "session with dot": ('[tmux]\nsession = "a.b"\n', ["[tmux] session", "without ':' or '.'"]),
    "unbalanced quote": ('[checks.t]\nrun = "pytest \\"x"\n', ["[checks.t] run", "No closing quotation"]),
    "not a table": ("queue = 3\n", ["[queue]", "a table"]),
    "and-and is a false green": (
        '[checks.t]\nrun = "true && pytest"\n',
        ["[checks.t] run", 'shell syntax "&&"', "no shell runs", "bash -c 'true && pytest'", "env = {"],
    ),
    "or-or": ('[checks.t]\nrun = "pytest || true"\n', ['shell syntax "||"', "bash -c"]),
    "pipe": ('[checks.t]\nrun = "pytest | tee log"\n', ['shell syntax "|"', "bash -c"]),
    "semicolon": ('[checks.t]\nrun = "make; pytest"\n', ['shell syntax ";"', "bash -c"]),
    "redirect": ('[checks.t]\nrun = "pytest > out.txt"\n', ['shell syntax ">"', "bash -c"]),
    "input": ('[checks.t]\nrun = "python < in.txt"\n', ['shell syntax "<"', "bash -c"]),
    "backtick": ("[checks.t]\nrun = 'pytest `ls`'\n", ['shell syntax "`"', "bash -c"]),
    "command substitution": ("[checks.t]\nrun = 'pytest $(ls)'\n", ['shell syntax "$("', "bash -c"]),
    "leading assignment": (
        '[checks.t]\nrun = "PYTHONHASHSEED=0 pytest"\n',
        ["[checks.t] run", "`PYTHONHASHSEED=0`", 'env = { PYTHONHASHSEED = "0" }', "bash -c"],
    ),
    "operator in a list": ('[checks.t]\nrun = ["true", "&&", "pytest"]\n', ['shell syntax "&&"', "bash -c"]),
    "bad toml": ("[queue\n", ["not valid TOML"]),
}


@pytest.mark.parametrize("text,needles", BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_invalid_config_is_reported_with_its_key_and_exit_2(
    factory: Path, text: str, needles: list[str]
) -> None:
    (factory / "factory.toml").write_text(text)
    proc = run_fac("config", cwd=factory)
    assert_usage_error(proc, "factory.toml", *needles)


def test_every_command_that_reads_the_config_refuses_an_invalid_one(factory: Path) -> None:
    (factory / "factory.toml").write_text("[queue]\nmax_batch = 0\n")
    for args in (["status"], ["spawn", "worker", "--no-up", "--cmd", "true"], ["up"]):
        assert_usage_error(run_fac(*args, cwd=factory), "[queue] max_batch")


def test_check_definition_from_the_issue_parses_to_a_checkdef() -> None:
    text = (
        "[checks.tests]\n"
        'run = "python -m pytest -q"\n'
        'cwd = "system-under-construction"\n'
        'stage = ["inner", "gate"]\n'
        "timeout = 300\n"
    )
    cfg = config.parse(text, default_name="demo")
    assert cfg.checks == (
        CheckDef(
            name="tests",
            run="python -m pytest -q",
            cwd="system-under-construction",
            stage=("inner", "gate"),
            timeout=300.0,
        ),
    )


def test_check_fields_are_normalised() -> None:
    text = (
        '[checks.lint]\nrun = ["ruff", "check", "."]\nstage = "inner"\nkind = "judgment"\n'
        'required = false\nenv = { B = "2", A = "1" }\n'
        '[checks.tests]\nrun = "pytest"\nstage = ["gate", "gate"]\n'
    )
    lint, tests = config.parse(text, default_name="demo").checks
    assert lint.run == ("ruff", "check", ".")
    assert lint.stage == ("inner",)
    assert lint.kind == "judgment" and lint.required is False
    assert lint.env == (("A", "1"), ("B", "2"))
    assert tests.stage == ("gate",)
    assert tests.timeout == 600.0 and tests.cwd == "." and tests.required is True


def test_empty_config_means_defaults_named_after_the_directory() -> None:
    cfg = config.parse("", default_name="shop")
    assert cfg == Config(name="shop", main="main", session="fac-shop")
    assert cfg.queue.max_batch == 16 and cfg.queue.retries == 1 and cfg.queue.parallel >= 1


def test_a_directory_with_a_dot_gives_a_session_tmux_keeps(tmp_path: Path) -> None:
    assert config.parse("", default_name="api.v2").session == "fac-api_v2"
    fac_ok("init", "my.proj", cwd=tmp_path)
    fac_ok("up", cwd=tmp_path / "my.proj")
    fac_ok("spawn", "worker", "--no-up", "--name", "w1", "--cmd", "sleep 60", cwd=tmp_path / "my.proj")
    assert fac_json("status", cwd=tmp_path / "my.proj")["session_running"] is True
    fac_ok("down", cwd=tmp_path / "my.proj")


def test_name_and_session_can_be_configured() -> None:
    cfg = config.parse('[factory]\nname = "x"\nmain = "trunk"\n', default_name="dir")
    assert (cfg.name, cfg.main, cfg.session) == ("x", "trunk", "fac-x")
    cfg = config.parse('[tmux]\nsession = "mine"\n', default_name="dir")
    assert cfg.session == "mine"


def test_a_missing_factory_toml_loads_as_defaults(tmp_path: Path) -> None:
    assert config.load(tmp_path).name == tmp_path.name


def test_parse_errors_are_fac_errors_with_a_hint() -> None:
    with pytest.raises(FacError) as info:
        config.parse("[queue]\nmax_batch = 0\n", default_name="x")
    assert "[queue] max_batch" in info.value.message
    assert info.value.hint and "fac config --help" in info.value.hint
    assert info.value.exit_code == 2


def test_default_factory_toml_is_valid_and_round_trips_through_tomli_w() -> None:
    cfg = config.parse(config.DEFAULT_TOML + config.SAMPLE_CHECKS_TOML, default_name="x")
    again = config.parse(config.dumps(cfg.raw), default_name="x")
    assert again == cfg


def test_fac_config_shows_the_supervisor_and_context_sections(factory: Path) -> None:
    (factory / "factory.toml").write_text("[supervisor]\nmax_workers = 7\n[context]\nmax_chars = 5000\n")
    data = fac_json("config", cwd=factory)
    assert data["supervisor"]["max_workers"] == 7 and data["context"] == {"max_chars": 5000}
    out = fac_ok("config", cwd=factory).stdout
    assert "max_workers=7" in out and "max_chars=5000" in out


def test_fac_config_json_shows_the_effective_configuration(factory: Path) -> None:
    data = fac_json("config", cwd=factory)
    assert data["root"] == str(factory)
    assert data["session"] == session_of() and data["main"] == "main"
    assert data["queue"]["max_batch"] == 16
    assert [c["name"] for c in data["checks"]] == ["tests"]
    assert data["checks"][0]["stage"] == ["inner", "gate"]


def test_fac_config_prints_checks_for_humans(factory: Path) -> None:
    proc = run_fac("config", cwd=factory)
    assert proc.returncode == 0, proc.stderr
    assert "check tests: python -m pytest -q (cwd system-under-construction, stage inner+gate" in proc.stdout


@pytest.mark.parametrize(
    "run",
    [
        "bash -c 'true && pytest'",
        'bash -c "pytest | tee log"',
        'python -m pytest -k "a or b" -q',
        "python -c 'print(1 > 0)'",
        'echo "a;b"',
        "pytest tests/test_a\\;b.py",
    ],
)
def test_shell_syntax_inside_quotes_is_an_argument_and_accepted(run: str) -> None:
    text = f"[checks.t]\nrun = {json.dumps(run)}\n"
    assert config.parse(text, default_name="x").checks[0].run == run


def test_every_problem_in_the_config_is_reported_at_once(factory: Path) -> None:
    (factory / "factory.toml").write_text(
        "[queue]\nmax_batch = 0\nretries = -1\n[bogus]\nx = 1\n"
        '[checks.a]\nrun = "true && pytest"\ntimeout = -1\n[checks.b]\ncwd = "."\n'
    )
    proc = run_fac("config", cwd=factory)
    assert_usage_error(
        proc,
        "factory.toml: 6 problems",
        "[queue] max_batch: expected an integer >= 1, got 0",
        "[queue] retries: expected an integer >= 0, got -1",
        "unknown section [bogus]",
        '[checks.a] run: shell syntax "&&"',
        "[checks.a] timeout: expected a number of seconds > 0",
        "[checks.b] has no `run`",
        "fix all of them in factory.toml",
    )


def test_fac_config_shows_defaults_instead_of_a_dash(factory: Path) -> None:
    out = fac_ok("config", cwd=factory, env={"ANTHROPIC_MODEL": None, "ANTHROPIC_BASE_URL": None}).stdout
    agents = next(line for line in out.splitlines() if line.startswith("[agents]"))
    assert 'model="claude-sonnet-4-6" (default)' in agents
    assert 'base_url="https://api.anthropic.com" (default)' in agents
    supervisor = next(line for line in out.splitlines() if line.startswith("[supervisor]"))
    assert "fixer_command=(none)" in supervisor
    assert "=-" not in out
    env: dict[str, str | None] = {"ANTHROPIC_MODEL": "m-1", "ANTHROPIC_BASE_URL": None}
    with_env = fac_ok("config", cwd=factory, env=env).stdout
    assert 'model="m-1" (from $ANTHROPIC_MODEL)' in with_env
