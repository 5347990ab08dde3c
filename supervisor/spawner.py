"""The warm spawner: `fac spawn` from a human's terminal, served by a process that has fac loaded.

A cold `fac spawn` spends about as long starting Python and importing fac as git spends making the
agent's tree. While the factory is up, its supervisor keeps one more process, the spawner, with fac
imported and its probes (tmux's version, bubblewrap) answered, listening on `.fac/spawner/spawner.sock`.
`fac spawn` connects, hands over its argv, working directory, environment and its stdin, stdout and
stderr themselves (file descriptors, SCM_RIGHTS), and the spawner forks a child that runs the very
same CLI in that directory with that environment and those descriptors: the same checks, the same
output on the same terminal, the same exit code, only without the start-up. The child first sends
its pid (the client forwards Ctrl-C and a terminate to it), last its exit code.

Trust: the socket lives in `.fac/`, which no agent's sandbox shows (isolation.py), and it answers
only `spawn`, which a human may run anyway; inside a pane `fac` never comes here (it talks to its
own channel). Where agents run unsandboxed they can reach `.fac/` and the store as well; the
spawner adds nothing to that.

Anything wrong on the way (no socket, nobody listening, a refused or broken connection before the
child has started) and `fac spawn` runs as before, in its own process; `FAC_NO_SPAWNER=1` asks for that.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping

from supervisor import locate

# The client side runs in every human `fac spawn` before anything else: it imports no pathlib, json,
# struct or subprocess (each a few milliseconds of a start-up that is the point of this module).
# In a directory of its own: the supervisor watches .fac/ itself, and a socket created there on each
# start would wake it.
DIR_NAME = "spawner"  # .fac/spawner/
SOCKET_NAME = "spawner.sock"
LOG_NAME = "requests.log"  # one line per request
OFF_ENV = "FAC_NO_SPAWNER"
COMMANDS = ("spawn",)  # what the spawner serves
SERVE_ARG = "_spawner"  # `python -m supervisor _spawner SOCKET LOG`: the spawner's own process
REQUEST_MAX = 1 << 22  # argv and environment: a few KB normally
ACCEPT_TICK = 1.0  # seconds between checks that the supervisor is still there
UNIX_PATH_MAX = 107  # channel.PATH_MAX, without importing the channel (and its subprocess)


def root_for(cwd: str, environ: Mapping[str, str]) -> str | None:
    """The factory root the way factory.find_root finds it, or None (then fac says why itself)."""
    return environ.get("FAC_ROOT") or locate.nearest_root(cwd)


def socket_path(root: str) -> str:
    return os.path.join(root, ".fac", DIR_NAME, SOCKET_NAME)


def encode(argv: list[str], cwd: str, env: Mapping[str, str]) -> bytes:
    """A request: NUL-separated fields (none of them can hold a NUL), after a 4-byte length."""
    fields = [cwd, str(len(argv)), *argv, *(f"{k}={v}" for k, v in env.items())]
    body = "\0".join(fields).encode("utf-8", "surrogateescape")
    return len(body).to_bytes(4, "big") + body


def decode(body: bytes) -> tuple[list[str], str, dict[str, str]]:
    """The inverse of `encode` (without its length); ValueError on anything else."""
    fields = body.decode("utf-8", "surrogateescape").split("\0")
    cwd, count = fields[0], int(fields[1])
    if count < 1 or len(fields) < 2 + count:
        raise ValueError("no argv")
    argv = fields[2 : 2 + count]
    env: dict[str, str] = {}
    for item in fields[2 + count :]:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError("not an environment entry")
        env[key] = value
    return argv, cwd, env


# --- the client: `fac spawn` ---


def wanted(argv: list[str], environ: Mapping[str, str]) -> bool:
    """Whether this `fac` invocation should go to the spawner (a human's `fac spawn ...`)."""
    return bool(argv) and argv[0] in COMMANDS and not environ.get(OFF_ENV)


def _address(path: str, sock: socket.socket, op: Callable[[str], None]) -> None:
    if len(os.fsencode(path)) <= UNIX_PATH_MAX:
        op(path)
        return
    from pathlib import Path

    from supervisor.channel import short_path  # a deep factory: through a directory fd

    with short_path(Path(path)) as short:
        op(short)


def _connect(path: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        _address(path, sock, sock.connect)
    except OSError:
        sock.close()
        return None
    return sock


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(n - len(buf))
        except InterruptedError:
            continue
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _int(data: bytes) -> int:
    return int.from_bytes(data, "big", signed=True)


def request(argv: list[str]) -> int | None:
    """Run `fac ARGV` in the spawner and return its exit code; None when it cannot (run it here)."""
    try:
        return _request(argv)
    except KeyboardInterrupt:  # before the child's pid came back (after it, Ctrl-C is forwarded)
        print("fac: interrupted", file=sys.stderr)
        return 130


def _request(argv: list[str]) -> int | None:
    cwd = os.getcwd()
    root = root_for(cwd, os.environ)
    if root is None:
        return None
    sock = _connect(socket_path(root))
    if sock is None:
        return None
    with sock:
        try:
            socket.send_fds(sock, [encode(argv, cwd, os.environ)], [0, 1, 2])
        except OSError:
            return None  # nothing started
        head = _recv_exact(sock, 4)
        if head is None:
            return None  # the child never started: nothing was done, run it here
        pid = _int(head)

        def forward(sig: int, _frame: object) -> None:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, forward)
        tail = _recv_exact(sock, 4)
    if tail is None:
        print(
            f"fac: error: the spawner's run of `fac {' '.join(argv)}` (pid {pid}) ended without an answer",
            file=sys.stderr,
        )
        print("  hint: `fac status` shows whether the worker was made", file=sys.stderr)
        return 1
    return _int(tail)


# --- the server: started by the supervisor ---


class Request:
    """One `fac` run to make (a plain class: see the imports)."""

    __slots__ = ("argv", "cwd", "env", "fds")

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str], fds: list[int]) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self.fds = fds  # the client's stdin, stdout and stderr


def serve(path: str, run: Callable[[], object], *, log: str | None = None) -> None:
    """Answer requests on `path` until the parent (the supervisor) is gone; `run` is the CLI.

    Single-threaded on purpose: it forks for each request, and a fork copies only the thread that
    calls it (a lock another thread held would stay locked in the child forever).
    """
    parent = os.getppid()
    if os.path.lexists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    _address(path, listener, listener.bind)
    os.chmod(path, 0o600)
    listener.listen(16)
    listener.settimeout(ACCEPT_TICK)
    out = open(log, "a", encoding="utf-8") if log else None  # noqa: SIM115 (kept open while serving)
    try:
        while os.getppid() == parent:
            _reap()
            try:
                conn, _ = listener.accept()
            except OSError:  # the tick's timeout, or a client gone before it was accepted
                continue
            with conn:
                req = _receive(conn)
                if req is None:
                    continue
                t0 = time.monotonic()
                pid = os.fork()
                if pid == 0:  # the child: never returns
                    listener.close()
                    _child(conn, req, run)
                for fd in req.fds:
                    os.close(fd)
                if out is not None:
                    out.write(
                        f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {pid}: fac {' '.join(req.argv)}"
                        f" (cwd {req.cwd}, forked in {(time.monotonic() - t0) * 1000:.1f} ms)\n"
                    )
                    out.flush()
    finally:
        listener.close()
        if os.path.lexists(path):
            os.unlink(path)
        if out is not None:
            out.close()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _receive(conn: socket.socket) -> Request | None:
    conn.settimeout(5.0)  # a client that connects and says nothing does not hold the spawner
    fds: list[int] = []
    try:
        data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 3)
        if len(fds) != 3 or len(data) < 4:
            raise ValueError("not a request")
        size = int.from_bytes(data[:4], "big")
        if size > REQUEST_MAX:
            raise ValueError("too large")
        body = bytearray(data[4:])
        while len(body) < size:
            chunk = conn.recv(size - len(body))
            if not chunk:
                raise ValueError("cut short")
            body += chunk
        argv, cwd, env = decode(bytes(body))
        if argv[0] not in COMMANDS:
            raise ValueError(f"not served: {argv[0]}")
        return Request(argv, cwd, env, fds)
    except (OSError, ValueError, IndexError):
        for fd in fds:
            os.close(fd)
        return None
    finally:
        conn.settimeout(None)


def _child(conn: socket.socket, req: Request, run: Callable[[], object]) -> None:
    code = 1
    try:
        for target, fd in enumerate(req.fds):
            os.dup2(fd, target)
            os.close(fd)
        # Signals as a `fac` in the caller's terminal has them, whatever the spawner inherited (a
        # supervisor started in the background ignores SIGINT): the client forwards them here.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        os.environ.clear()
        os.environ.update(req.env)
        os.chdir(req.cwd)
        sys.argv = ["fac", *req.argv]
        # Python chose the buffering when the spawner started (no terminal then): as a `fac` in
        # this terminal would have it.
        for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
            if hasattr(stream, "reconfigure"):
                stream.reconfigure(line_buffering=os.isatty(fd))
        conn.sendall(os.getpid().to_bytes(4, "big", signed=True))
        try:
            run()
            code = 0
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                print(e.code, file=sys.stderr)
                code = 1
    except BaseException:  # the CLI prints its own errors; anything else: a traceback, as fac would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        try:
            conn.sendall(code.to_bytes(4, "big", signed=True))
        except OSError:
            pass
        os._exit(code)
