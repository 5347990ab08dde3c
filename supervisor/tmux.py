"""tmux, wrapped once: sessions, windows, panes and text delivery.

Every call honours `FAC_TMUX_SOCKET` (a `tmux -L` socket name), so tests and several factories
never touch the user's default server. `Tmux` runs `tmux` subprocesses (what libtmux does
underneath): importing libtmux costs more than a whole `fac spawn`'s tmux work, so the CLI's hot
paths never import it. `LiveTmux` is the same server through libtmux's object model, for processes that
run for hours and pay that import once (the supervisor and its dashboard, the test suite). Text
reaches a pane through a named tmux buffer (`load-buffer` from stdin, then `paste-buffer`), never by
putting it on a command line.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.errors import FacError

if TYPE_CHECKING:
    import libtmux  # imported for real only by `LiveTmux`, the long-lived processes' view

MIN_TMUX = (3, 0)  # new-window/respawn-pane -e
OWNER_OPTION = "@fac_root"  # a session option: the factory root that created the session


# A terminal's size in the environment (exported by some shells, and by pytest-xdist's workers) is
# a snapshot of one terminal: a tmux server started with it hands it to every pane, and programs there
# (rich, curses, less) then draw at that size whatever the pane's real one (fac's dashboard stayed at
# 80x24 in a 220-column window). Panes have their own size; tmux is never given these.
TERMINAL_SIZE = ("COLUMNS", "LINES")


def client_env() -> dict[str, str] | None:
    """The environment for a tmux client: this one without TERMINAL_SIZE (None: this one as it is)."""
    if not any(var in os.environ for var in TERMINAL_SIZE):
        return None
    return {k: v for k, v in os.environ.items() if k not in TERMINAL_SIZE}


def socket_name() -> str | None:
    return os.environ.get("FAC_TMUX_SOCKET") or None


@functools.cache
def tmux_version() -> tuple[int, int]:
    if shutil.which("tmux") is None:
        raise FacError("tmux is not installed", hint="install it: apt-get install -y tmux")
    out = subprocess.run(["tmux", "-V"], capture_output=True, text=True).stdout
    m = re.search(r"(\d+)\.(\d+)", out)
    if not m:
        raise FacError(f"cannot read the tmux version from {out!r}", hint="install tmux >= 3.0")
    return int(m.group(1)), int(m.group(2))


def require_tmux() -> None:
    if tmux_version() < MIN_TMUX:
        raise FacError(
            f"tmux {'.'.join(map(str, tmux_version()))} is too old: fac needs tmux >= 3.0",
            hint="upgrade tmux: apt-get install -y tmux",
        )


def _proc_end(pid: int) -> tuple[bool, int | None, int | None]:
    """(dead, exit status, signal) of a pane's process from /proc; (True, None, None) when unknowable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return True, None, None  # gone (reaped): tmux will say how it ended
    if fields[0] != "Z":
        return False, None, None
    try:
        wait_status = int(fields[49])  # exit_code (field 52 of stat): the wait(2) status
    except (IndexError, ValueError):
        return True, None, None
    if wait_status & 0x7F:
        return True, None, wait_status & 0x7F
    return True, (wait_status >> 8) & 0xFF, None


class TmuxError(FacError):
    pass


@dataclass(frozen=True)
class SessionOwner:
    """What tmux says of a session name: whether it exists, and the factory root that created it."""

    exists: bool
    root: str  # "" when the session carries no OWNER_OPTION (fac did not create it)


@dataclass(frozen=True)
class TmuxResult:
    """What one tmux invocation returned, shaped like libtmux's `tmux_cmd` (lists of lines)."""

    returncode: int
    stdout: list[str]
    stderr: list[str]


def status_left_length(session: str) -> int:
    """Room for the default status-left, `[NAME] `, with the whole session name in it."""
    return max(40, len(session) + 3)


def _lines(text: str) -> list[str]:
    lines = text.split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    return lines


def escape_arg(arg: str) -> str:
    """Protect an argument that ends in ";" from tmux, which reads it as the end of a command.

    Unescaped, an env value or a command line ending in ";" (`find . -exec rm {} \\;`, a task
    text "fix it;") is cut short and the rest of the line runs as another tmux command.
    """
    return arg[:-1] + "\\;" if arg.endswith(";") else arg


@dataclass(frozen=True)
class PaneInfo:
    session: str
    window_id: str
    window_name: str
    pane_id: str
    pane_pid: int
    dead: bool
    dead_status: int | None  # exit code of a dead pane; None when a signal killed it or not known yet
    dead_signal: int | None
    current_command: str

    @property
    def settled(self) -> bool:
        """Dead with a known end: an exit status or a signal (tmux learns them a moment after death)."""
        return self.dead and (self.dead_status is not None or self.dead_signal is not None)


_PANE_FORMAT = "\t".join(
    [
        "#{session_name}",
        "#{window_id}",
        "#{window_name}",
        "#{pane_id}",
        "#{pane_pid}",
        "#{pane_dead}",
        "#{pane_dead_status}",
        "#{pane_dead_signal}",
        "#{pane_current_command}",
    ]
)


def _pane_info(
    session: str,
    window_id: str,
    window_name: str,
    pane_id: str,
    pid: str,
    dead: str,
    status: str,
    signal: str,
    command: str,
) -> PaneInfo:
    """A pane as tmux formats it (every field a string, empty when unset)."""
    is_dead = dead == "1"
    # tmux marks a pane dead at the pty's end of file and learns the exit status only when it
    # reaps the process: an empty status with no signal means "not known yet", never 0.
    code = int(status) if status else None
    sig = int(signal) if signal else None
    if is_dead and code is None and sig is None and pid:
        # Ask the kernel: a zombie tmux has not reaped yet still holds its exit status, and a
        # process that closed its terminal but runs on is not dead at all.
        is_dead, code, sig = _proc_end(int(pid))
    return PaneInfo(
        session=session,
        window_id=window_id,
        window_name=window_name,
        pane_id=pane_id,
        pane_pid=int(pid or 0),
        dead=is_dead,
        dead_status=code,
        dead_signal=sig,
        current_command=command,
    )


class Tmux:
    """One tmux server (the one named by FAC_TMUX_SOCKET, or the default)."""

    def __init__(self, socket: str | None = None) -> None:
        require_tmux()
        self.socket = socket if socket is not None else socket_name()

    def run(self, *commands: list[str]) -> TmuxResult:
        """Run one or more tmux commands in a single invocation (joined with tmux's ";")."""
        argv = self._argv()
        for i, command in enumerate(commands):
            if i:
                argv.append(";")
            argv += [escape_arg(a) for a in command]
        proc = subprocess.run(argv, capture_output=True, text=True, env=client_env())
        return TmuxResult(proc.returncode, _lines(proc.stdout), [x for x in _lines(proc.stderr) if x])

    def cmd(self, *args: str, check: bool = True) -> list[str]:
        res = self.run(list(args))
        if check and res.returncode != 0:
            raise TmuxError(f"tmux {args[0]} failed: {' '.join(res.stderr).strip()}")
        return list(res.stdout)

    def has_session(self, name: str) -> bool:
        return self.run(["has-session", "-t", f"={name}"]).returncode == 0

    def session_owner(self, name: str) -> SessionOwner:
        """Whether session `name` exists and which factory root (its OWNER_OPTION) created it."""
        # display-message alone answers "" for a session that does not exist: has-session first.
        res = self.run(
            ["has-session", "-t", f"={name}"],
            ["display-message", "-p", "-t", f"={name}:", f"#{{{OWNER_OPTION}}}"],
        )
        if res.returncode != 0:
            return SessionOwner(exists=False, root="")
        return SessionOwner(exists=True, root=res.stdout[0] if res.stdout else "")

    def new_window(
        self,
        session: str,
        name: str,
        cwd: str,
        argv: list[str],
        env: dict[str, str],
        log: str | None = None,
        owner: str = "",
    ) -> tuple[str, str]:
        """Start `argv` in a new window (creating the session if needed); returns (window_id, pane_id).

        The window is created holding a placeholder, made remain-on-exit, then respawned with the real
        command, so even a command that exits at once leaves its output readable in the pane. A
        session this call creates is marked with `owner` (OWNER_OPTION) in the same invocation. The
        pane's output is also appended to `log` (default: discarded) through pipe-pane: tmux 3.3
        otherwise drops output it has not read yet when the process exits, and a piped pane makes it
        read everything first.
        """
        fmt = "#{window_id}\t#{pane_id}"
        placeholder = ["sleep", "86400"]
        # Try the common case (the session exists) first: one tmux call instead of two.
        res = self.run(
            ["new-window", "-d", "-P", "-F", fmt, "-t", f"={session}:", "-n", name, "-c", cwd, *placeholder]
        )
        if res.returncode != 0 and not self.has_session(session):
            mark = [["set-option", "-t", f"={session}:", OWNER_OPTION, owner]] if owner else []
            res = self.run(
                [
                    "new-session",
                    "-d",
                    "-P",
                    "-F",
                    fmt,
                    "-s",
                    session,
                    "-n",
                    name,
                    "-c",
                    cwd,
                    "-x",
                    "220",
                    "-y",
                    "50",
                    *placeholder,
                ],
                *mark,
                # the status line shows the whole session name, hash and all (tmux cuts it at 10)
                ["set-option", "-t", f"={session}:", "status-left-length", str(status_left_length(session))],
            )
        if res.returncode != 0 or not res.stdout:
            raise TmuxError(f"tmux new-window failed: {' '.join(res.stderr).strip()}")
        window_id, pane_id = res.stdout[0].split("\t")
        try:
            setup = [
                ["set-option", "-w", "-t", window_id, "remain-on-exit", "on"],
                ["set-option", "-w", "-t", window_id, "allow-rename", "off"],
                ["set-option", "-w", "-t", window_id, "automatic-rename", "off"],
                ["pipe-pane", "-O", "-t", pane_id, f"exec cat >> {shlex.quote(log or '/dev/null')}"],
            ]
            self.respawn(pane_id, cwd, argv, env, before=setup)
        except BaseException:
            self.kill_window(window_id)
            raise
        return window_id, pane_id

    def respawn(
        self,
        pane_id: str,
        cwd: str,
        argv: list[str],
        env: dict[str, str],
        before: list[list[str]] | None = None,
    ) -> None:
        """Replace whatever runs in the pane (alive or dead) with `argv`; the window keeps its id and name.

        `before`: tmux commands to run first in the same tmux invocation (one process, not several).
        """
        env_args = [a for k, v in env.items() for a in ("-e", f"{k}={v}")]
        # tmux gives a new pane the PATH of the (unattached) client that asked for it, overriding
        # `-e PATH=...`; so the client itself runs with the PATH the pane should get.
        saved = os.environ.get("PATH")
        if "PATH" in env:
            os.environ["PATH"] = env["PATH"]
        try:
            res = self.run(
                *(before or []), ["respawn-pane", "-k", "-t", pane_id, "-c", cwd, *env_args, *argv]
            )
            if res.returncode != 0:
                raise TmuxError(f"tmux respawn-pane failed: {' '.join(res.stderr).strip()}")
        finally:
            if saved is not None:
                os.environ["PATH"] = saved

    def set_hook(self, session: str, hook: str, command: str) -> None:
        self.cmd("set-hook", "-t", f"={session}", hook, command)

    def panes(self, session: str) -> list[PaneInfo]:
        """Every pane of `session` (empty when the session does not exist)."""
        if not self.has_session(session):
            return []
        res = self.run(["list-panes", "-s", "-t", f"={session}", "-F", _PANE_FORMAT])
        rows = (line.split("\t") for line in res.stdout)
        return [_pane_info(*parts) for parts in rows if len(parts) == 9]

    def kill_window(self, target: str) -> None:
        self.run(["kill-window", "-t", target])

    def kill_session(self, name: str) -> None:
        self.run(["kill-session", "-t", f"={name}"])

    def paste(self, pane_id: str, text: str, *, enter: bool = True) -> None:
        """Deliver `text` literally into a pane as if typed, through a private named buffer."""
        buf = f"fac-{uuid.uuid4().hex[:12]}"
        proc = subprocess.run(
            [*self._argv(), "load-buffer", "-b", buf, "-"], input=text.encode("utf-8"), capture_output=True
        )
        if proc.returncode != 0:
            raise TmuxError(f"tmux load-buffer failed: {proc.stderr.decode(errors='replace').strip()}")
        # -d deletes the buffer after pasting; -p uses bracketed paste when the program asked for it.
        self.cmd("paste-buffer", "-d", "-p", "-b", buf, "-t", pane_id)
        if enter:
            self.cmd("send-keys", "-t", pane_id, "Enter")

    def press_enter(self, pane_id: str) -> None:
        """Press Enter in a pane (text pasted into a prompt box whose Enter was lost)."""
        self.cmd("send-keys", "-t", pane_id, "Enter")

    def _argv(self) -> list[str]:
        return ["tmux", "-L", self.socket] if self.socket else ["tmux"]

    def attach_argv(self, session: str, window_id: str) -> list[str]:
        """The command that puts the user's terminal on a window (switch-client when inside tmux)."""
        if os.environ.get("TMUX"):
            return [*self._argv(), "switch-client", "-t", window_id]
        return [*self._argv(), "attach-session", "-t", f"={session}", ";", "select-window", "-t", window_id]


class LiveTmux(Tmux):
    """The same server through libtmux's objects, for a process that lives long enough to pay the import once.

    It answers what `Tmux` answers (the same `PaneInfo`s) and adds what only a long-lived watcher
    wants: the text on a pane, whether the server runs, and stopping it.
    """

    def __init__(self, socket: str | None = None) -> None:
        super().__init__(socket)
        import libtmux

        self.server: libtmux.Server = libtmux.Server(socket_name=self.socket)

    def panes(self, session: str) -> list[PaneInfo]:
        """Every pane of `session` (empty when the session, or the server, does not exist)."""
        found = self.server.sessions.filter(session_name=session)
        if not found:
            return []
        return [
            _pane_info(
                p.session_name or session,
                p.window_id or "",
                p.window_name or "",
                p.pane_id or "",
                p.pane_pid or "",
                p.pane_dead or "",
                p.pane_dead_status or "",
                p.pane_dead_signal or "",
                p.pane_current_command or "",
            )
            for p in found[0].panes
        ]

    def capture(self, target: str, start: int = -2000) -> list[str] | None:
        """The lines on a pane (a pane id, a window id or session:window) and up to `-start` lines of its
        history, wrapped lines joined; None when tmux has no such target."""
        res = self.server.cmd("capture-pane", "-p", "-J", "-t", target, "-S", str(start))
        return list(res.stdout) if res.returncode == 0 else None

    def running(self) -> bool:
        """Whether the server answers; a server that cannot be asked is taken to be running."""
        res = self.server.cmd("list-sessions")
        if res.returncode == 0:
            return True
        err = " ".join(res.stderr)
        return not ("no server running" in err or "error connecting" in err)

    def kill_server(self) -> None:
        if self.running():
            self.server.kill()
