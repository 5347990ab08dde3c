"""`fac env`, `fac env build`, `fac env shell`: the system's development environment (project-container/)."""

from __future__ import annotations

import os
import shlex
import sys
import time

import click

from supervisor.commands import echo_json, find_factory, timestamped
from supervisor.errors import EXIT_FAILED, FacError


@click.group("env", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text, for scripts.")
@click.pass_context
def env_cmd(ctx: click.Context, as_json: bool) -> None:
    """The system's development environment: which one is in use, its hash, what built it and when.

    fac builds `project-container/` on main once per content hash: a container image when podman or
    docker answers, else a virtualenv in `.fac/envs/<hash>` from requirements.txt and setup. Every
    check and every agent pane uses it.
    """
    if ctx.invoked_subcommand:
        return
    from supervisor import env

    fac = find_factory()
    e = env.current(fac)
    failed = env.failure(fac)
    if as_json:
        echo_json(
            {
                **e.as_dict(),
                "failed": failed.message if failed else None,
                "log": str(failed.log) if failed else None,
            }
        )
        return
    click.echo(e.describe())
    if e.built_at:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.built_at))
        click.echo(f"  built {when} by {e.built_by} in {e.duration or 0:.1f}s")
    if e.bin:
        click.echo(f"  bin: {e.bin} (first on PATH in checks and agent panes)")
    if failed:
        click.echo(f"  FAILED: {failed.message}\n  log: {failed.log}\n  hint: {failed.hint}")


@env_cmd.command("build")
def env_build() -> None:
    """Build main's environment now, with progress (again after a failure); exit 1 when it does not build."""
    from supervisor import env, line

    fac = find_factory()
    e = line.ensure_env(fac, say=timestamped, retry=True)
    if e is None:
        err = env.failure(fac)
        click.echo(f"fac env build: {err.message if err else 'failed'}", err=True)
        if err:
            click.echo(f"  log: {err.log}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(e.describe())


@env_cmd.command("shell")
@click.option("-c", "command", help="Run this command line (split like a shell would) instead of a shell.")
def env_shell(command: str | None) -> None:
    """Open a shell in the environment (in the sandbox when one is available), in the tree you are in."""
    from pathlib import Path

    from supervisor import env, repo

    fac = find_factory()
    e = env.current(fac)
    if e.kind == "host" and e.wanted:
        raise FacError(f"the environment {e.wanted} is not built yet", hint="run `fac env build`")
    sb = env.sandbox_for(fac, e)
    here = Path(repo.git(Path.cwd(), "rev-parse", "--show-toplevel", check=False) or Path.cwd())
    argv = shlex.split(command) if command else [os.environ.get("SHELL") or "/bin/sh"]
    environ = dict(os.environ)
    if sb.env_bin:
        environ["PATH"] = f"{sb.env_bin}{os.pathsep}{environ.get('PATH', '')}"
        environ["VIRTUAL_ENV"] = str(Path(sb.env_bin).parent)
    if sb.kind == "container":
        assert sb.engine and sb.image
        tty = ["-it"] if sys.stdin.isatty() and not command else []
        full = [
            sb.engine,
            "run",
            "--rm",
            *tty,
            "--network",
            "none",
            "-v",
            f"{here}:{here}",
            "-w",
            str(Path.cwd()),
            sb.image,
            *argv,
        ]
    elif sb.kind == "bwrap":
        tmp = fac.fac_dir / "tmp" / f"env-shell-{os.getpid()}"
        tmp.mkdir(parents=True, exist_ok=True)
        environ["TMPDIR"] = str(tmp)
        full = sb.wrap(argv, Path.cwd(), [here, tmp])
    else:
        full = argv
    click.echo(f"fac env shell: {e.describe()}; sandbox: {sb.kind}: {sb.detail}", err=True)
    os.execvpe(full[0], full, environ)
