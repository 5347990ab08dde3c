"""The `fac` console script and `python -m supervisor`.

`fac --version` is answered before the CLI (click and every command) is imported: agents and
scripts call it to probe for fac, and it should cost little more than starting Python.
"""

import sys


def main() -> None:
    if sys.argv[1:] in (["--version"], ["-V"]):
        from supervisor import __version__

        print(f"fac, version {__version__}")
        return
    from supervisor import identity

    sock = identity.relay_socket()
    # In a worker's pane every request goes through its channel; `fac agent run` is the pane's own loop.
    if sock and sys.argv[1:3] != ["agent", "run"]:
        _relay(sock)
    if sys.argv[1:2] == ["_spawner"]:  # spawner.SERVE_ARG: the supervisor starts it
        _serve_spawner()
        return
    if not identity.caller().is_agent:  # only a human's `fac spawn` goes to the spawner
        import os

        from supervisor import spawner

        if spawner.wanted(sys.argv[1:], os.environ):  # warm when the factory is up
            code = spawner.request(sys.argv[1:])
            if code is not None:
                sys.exit(code)
    from supervisor.cli import main as cli_main

    cli_main()


def _serve_spawner() -> None:
    """The spawner's process (spawner.py): fac imported and probed once, then forked per request."""
    from supervisor import spawner
    from supervisor.cli import main as cli_main
    from supervisor.cli import prewarm

    prewarm()
    args = sys.argv[2:]
    spawner.serve(args[0], cli_main, log=args[1] if len(args) > 1 else None)


def _relay(sock: str) -> None:
    from pathlib import Path

    from supervisor import channel

    try:
        code = channel.relay(Path(sock), sys.argv[1:])
    except channel.ChannelDown as e:
        print(f"fac: error: {e.message}", file=sys.stderr)
        if e.hint:
            from supervisor.text import typed

            print(f"  hint: {typed(e.hint)}", file=sys.stderr)
        # A runtime's hook must never block its agent on a missing supervisor (Claude Code reads 2
        # from a hook as "block"): hooks fail with 1, everything else with 2.
        code = 1 if sys.argv[1:2] == ["hook"] else 2
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
