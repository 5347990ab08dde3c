"""The `command` runtime: any command line in the pane (scripted agents, tests, `fac demo`)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from supervisor.errors import FacError
from supervisor.runtimes import Launch

# Words bash runs itself (never looked up on PATH): a command line starting with one is not checked.
SHELL_WORDS = frozenset(
    "! { } [[ ]] ( ) : . alias bg bind break builtin case cd command continue declare dirs disown do done "
    "elif else enable esac eval exit export fc fg fi for function getopts hash if in jobs let local logout "
    "popd pushd read readonly return select set shift shopt source suspend then time times trap type "
    "typeset ulimit umask unalias unset until wait while".split()
)
# Interpreters whose first operand is a script file: the options that take no argument before it,
# and those that make the program inline (or a module), with no script file to look for.
_SHELL = (
    {"-e", "-x", "-u", "-v", "-eu", "-ex", "-eux", "-xe", "-l", "--norc", "--noprofile", "--login"},
    {"-c"},
)
_PYTHON = ({"-u", "-B", "-E", "-s", "-S", "-I", "-O", "-OO", "-P", "-q"}, {"-c", "-m"})
INTERPRETERS: dict[str, tuple[set[str], set[str]]] = {
    "bash": _SHELL,
    "sh": _SHELL,
    "dash": _SHELL,
    "zsh": _SHELL,
    "python": _PYTHON,
    "python3": _PYTHON,
    "node": (set(), {"-e", "-p"}),
    "perl": ({"-w"}, {"-e", "-E"}),
    "ruby": ({"-w"}, {"-e"}),
}


@dataclass(frozen=True)
class Needs:
    """What a command line will run first: its program (None: bash runs it itself) and, for an
    interpreter, the script file it reads (None: inline code, or options fac does not read)."""

    program: str | None
    script: str | None = None


def needs(command: str) -> Needs:
    """The program and script a command line starts with (pure: table-tested)."""
    lex = shlex.shlex(command, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    try:
        words = list(lex)
    except ValueError:  # unbalanced quotes: bash will say so in the pane
        return Needs(None)
    while words and "=" in words[0] and not words[0].startswith("="):
        words = words[1:]  # VAR=value before the program
    if words and words[0] == "exec":
        words = words[1:]
    if not words or words[0] in SHELL_WORDS or set(words[0]) & set(";&|<>()"):
        return Needs(None)
    program, rest = words[0], words[1:]
    known = INTERPRETERS.get(program.rsplit("/", 1)[-1])
    if known is None:
        return Needs(program)
    flags, inline = known
    for word in rest:
        if word in inline or set(word) & set(";&|<>()"):
            return Needs(program)
        if word.startswith("-"):
            if word not in flags:
                return Needs(program)  # an option fac does not know may take the next word
            continue
        return Needs(program, word)
    return Needs(program)


class CommandRuntime:
    name = "command"

    def check_available(self, launch: Launch) -> None:
        if not launch.command or not launch.command.strip():
            raise FacError(
                "the command runtime needs a command",
                hint='pass --cmd "bash ./agent.sh" (the command runs in the worker\'s worktree)',
            )

    def argv(self, launch: Launch) -> list[str]:
        # The command is the human's own command line, run as if typed in the pane; bash without rc
        # files so a slow ~/.bashrc cannot delay or change the agent.
        assert launch.command is not None
        return ["bash", "--norc", "--noprofile", "-c", launch.command]
