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
    from supervisor.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
