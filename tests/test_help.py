"""`--help` explains: every --json is documented, the root lists the pane's environment, demo is current."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
from click.testing import CliRunner

from supervisor import demo, workers
from supervisor.cli import cli


def every_command() -> Iterator[tuple[str, click.Command]]:
    def walk(cmd: click.Command, path: str, ctx: click.Context) -> Iterator[tuple[str, click.Command]]:
        yield path, cmd
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                sub = cmd.get_command(ctx, name)
                assert sub is not None, f"{path} {name}"
                yield from walk(sub, f"{path} {name}", click.Context(sub, parent=ctx, info_name=name))

    yield from walk(cli, "fac", click.Context(cli, info_name="fac"))


def test_every_json_option_has_help_text() -> None:
    with_json = []
    for path, cmd in every_command():
        for p in cmd.params:
            if isinstance(p, click.Option) and "--json" in p.opts:
                with_json.append(path)
                assert p.help and p.help.strip(), f"`{path} --json` has no help text"
    assert len(with_json) > 30  # the walk really reached the subcommands
    assert {"fac log", "fac status", "fac queue", "fac delta ls", "fac spec lint"} <= set(with_json)
    shown = CliRunner().invoke(cli, ["delta", "ls", "--help"])
    assert "--json  " in shown.output and "JSON" in shown.output.split("--json", 1)[1].splitlines()[0]


def test_the_root_help_lists_every_variable_a_pane_gets(tmp_path: Path) -> None:
    from supervisor.factory import Factory, init

    init(tmp_path / "f")
    env = workers.pane_env(Factory(tmp_path / "f"), "w1", "worker", "fac/w1", tmp_path / "ctx.md", "a task")
    text = CliRunner().invoke(cli, ["--help"]).output
    fac_vars = sorted(k for k in env if k.startswith("FAC_"))
    assert {"FAC_CONTEXT", "FAC_TASK", "FAC_WORKER", "FAC_ROOT"} <= set(fac_vars)
    for var in [*fac_vars, "FAC_TMUX_SOCKET"]:
        assert f"\n    {var} " in text, f"{var} missing from the environment list of `fac --help`"


def test_demo_help_names_every_agent_of_the_demo() -> None:
    text = CliRunner().invoke(cli, ["demo", "--help"]).output
    names = [a[0] for a in demo.AGENTS] + ["erin"]
    for name in names:
        assert name in text, f"`fac demo --help` does not mention {name}"
    assert f"{len(demo.AGENTS)} scripted" in text.replace("four", "4")
    assert "fake Messages API" in text
