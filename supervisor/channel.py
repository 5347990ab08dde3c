"""The per-worker channel: one unix socket per worker, served by the supervisor, and its client.

A `fac` in a worker's pane (FAC_SOCKET set) does not open the store: it sends its argv, its cwd
and its stdin over the socket and prints what comes back, exiting with the same code. The server
runs the request as the worker whose socket accepted the connection (identity.CHANNEL_ENV), so
the identity is the socket's, never the environment's. Framing: one type byte, a 4-byte length,
the payload. Client to server: R (the request, JSON), I (stdin bytes), E (end of stdin). Server to
client: O (stdout bytes), e (stderr bytes), K (keep-alive, while the request runs), X (the exit
code, JSON; the last frame).

AF_UNIX paths hold at most 107 bytes; a deeper run directory is reached through
/proc/self/fd/N/fac.sock (a directory descriptor), so a long factory path never fails a bind.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from supervisor.errors import FacError

HEADER = struct.Struct(">cI")
CHUNK = 64 * 1024
REQUEST_MAX = 1024 * 1024  # argv and cwd; stdin streams in CHUNK frames
KEEPALIVE = 5.0  # seconds between K frames while a request runs
SILENCE = 30.0  # a client gives up when the server says nothing this long
CONNECT_GRACE = 10.0  # a new worker's socket appears at the supervisor's next pass (later on a busy machine)
PATH_MAX = 107  # sun_path holds 108 bytes with its NUL


class ChannelDown(FacError):
    """The supervisor does not answer on this socket (down, restarting, or the socket is gone)."""


# --- framing ---


def send_frame(sock: socket.socket, kind: bytes, payload: bytes = b"") -> None:
    sock.sendall(HEADER.pack(kind, len(payload)) + payload)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket, limit: int = REQUEST_MAX) -> tuple[bytes, bytes] | None:
    """The next frame, or None at the end of the stream."""
    head = _recv_exact(sock, HEADER.size)
    if head is None:
        return None
    kind, size = HEADER.unpack(head)
    if size > limit:
        raise ValueError(f"frame of {size} bytes")
    payload = _recv_exact(sock, size) if size else b""
    if payload is None:
        return None
    return kind, payload


# --- short paths for deep directories ---


@contextlib.contextmanager
def short_path(path: Path) -> Iterator[str]:
    """A path for bind/connect under the AF_UNIX limit: the path itself, or one through a dir fd."""
    if len(os.fsencode(str(path))) <= PATH_MAX:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


# --- the client (in a worker's pane) ---


def _connect(path: Path, grace: float) -> socket.socket:
    deadline = time.monotonic() + grace
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with short_path(path) as where:
                sock.connect(where)
            return sock
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError) as e:
            sock.close()
            if time.monotonic() >= deadline:
                why = "no socket" if not isinstance(e, ConnectionRefusedError) else "nobody listens"
                raise ChannelDown(
                    f"the supervisor does not answer on this worker's channel ({path}: {why})",
                    hint="it comes back when the supervisor restarts (a human: `fac up`); try again then",
                ) from None
            time.sleep(0.1)
        except OSError as e:
            sock.close()
            raise ChannelDown(
                f"cannot reach the supervisor on this worker's channel ({path}: {e.strerror})",
                hint="it comes back when the supervisor restarts (a human: `fac up`); try again then",
            ) from None


def _pump_stdin(sock: socket.socket, stdin: IO[bytes] | None) -> None:
    try:
        if stdin is not None:
            while True:
                data = os.read(stdin.fileno(), CHUNK)
                if not data:
                    break
                send_frame(sock, b"I", data)
        send_frame(sock, b"E")
    except OSError:
        pass  # the request ended (or the server went away) before stdin did


def relay(path: Path, argv: list[str], *, grace: float = CONNECT_GRACE) -> int:
    """Send `fac ARGV` over the channel at `path`; print its output; return its exit code."""
    stdin = None if sys.stdin is None or sys.stdin.isatty() else sys.stdin.buffer
    out = {b"O": sys.stdout.buffer, b"e": sys.stderr.buffer}

    def write(kind: bytes, payload: bytes) -> None:
        out[kind].write(payload)
        out[kind].flush()

    return _exchange(path, argv, os.getcwd(), stdin, write, grace)


@dataclass(frozen=True)
class Reply:
    """What one request over the channel printed, and its exit code."""

    code: int
    out: str
    err: str


def request(path: Path, argv: list[str], *, cwd: str, grace: float = CONNECT_GRACE) -> Reply:
    """Send `fac ARGV` over the channel at `path` with no stdin; what it printed, kept (for a program
    in the pane that speaks through the channel itself, as the built-in agent does)."""
    got: dict[bytes, bytearray] = {b"O": bytearray(), b"e": bytearray()}
    code = _exchange(path, argv, cwd, None, lambda kind, payload: got[kind].extend(payload), grace)
    return Reply(code, got[b"O"].decode(errors="replace"), got[b"e"].decode(errors="replace"))


def _exchange(
    path: Path,
    argv: list[str],
    cwd: str,
    stdin: IO[bytes] | None,
    write: Callable[[bytes, bytes], None],
    grace: float,
) -> int:
    sock = _connect(path, grace)
    with sock:
        send_frame(sock, b"R", json.dumps({"argv": argv, "cwd": cwd}).encode())
        threading.Thread(target=_pump_stdin, args=(sock, stdin), daemon=True).start()
        sock.settimeout(SILENCE)
        while True:
            try:
                frame = recv_frame(sock, limit=CHUNK * 4)
            except TimeoutError:
                raise ChannelDown(
                    f"the supervisor went silent for {SILENCE:g}s on this worker's channel ({path})",
                    hint="it may be stuck or restarting: try again in a moment",
                ) from None
            except (OSError, ValueError) as e:
                raise ChannelDown(f"the channel broke ({path}: {e})", hint="try again in a moment") from None
            if frame is None:
                raise ChannelDown(
                    f"the supervisor went away during the request ({path})",
                    hint="it comes back when the supervisor restarts; try again then",
                )
            kind, payload = frame
            if kind in (b"O", b"e"):
                write(kind, payload)
            elif kind == b"X":
                code: int = json.loads(payload)["code"]
                return code


# --- the server (in the supervisor) ---


@dataclass(frozen=True)
class Run:
    """How to run one request for a peer: the process's argv, environment and working directory."""

    argv: list[str]
    env: dict[str, str]
    cwd: str


Planner = Callable[[str, list[str], str], Run]  # (peer, argv, client's cwd) -> Run


def executor_env(base: Mapping[str, str], peer: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a request's run: the server's own, the peer's identity, never a socket."""
    from supervisor.identity import CHANNEL_ENV, SOCKET_ENV

    # Not the server's window (FAC_WINDOW) or terminal: the request runs as the peer, nowhere else.
    env = {k: v for k, v in base.items() if k not in (SOCKET_ENV, "TMUX", "TMUX_PANE", "FAC_WINDOW")}
    env.update(extra)
    env["FAC_WORKER"] = peer
    env[CHANNEL_ENV] = peer
    return env


def _valid_request(payload: bytes) -> tuple[list[str], str]:
    req = json.loads(payload)
    argv, cwd = req.get("argv"), req.get("cwd")
    if not isinstance(argv, list) or not all(isinstance(a, str) and "\0" not in a for a in argv):
        raise ValueError("argv must be a list of strings")
    if not isinstance(cwd, str):
        raise ValueError("cwd must be a string")
    return argv, cwd


class Server:
    """Serves one socket per worker; `sync` names the sockets, one thread selects on all of them.

    Idle it costs nothing: the selector blocks with no timeout. Each connection gets a thread of
    its own for as long as its request runs.
    """

    def __init__(self, plan: Planner, *, say: Callable[[str], None] | None = None) -> None:
        self.plan = plan
        self.say = say or (lambda _m: None)
        self.sel = selectors.DefaultSelector()
        self._socks: dict[str, tuple[Path, socket.socket, int]] = {}  # peer -> (path, listener, inode)
        self._lock = threading.Lock()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="fac-channel", daemon=True)
        self._thread.start()

    def sync(self, wanted: Mapping[str, Path]) -> None:
        """Serve exactly these peers' sockets: bind new ones (and gone or replaced files), close the rest."""
        with self._lock:
            for peer in list(self._socks):
                path, sock, inode = self._socks[peer]
                if wanted.get(peer) != path or _inode(path) != inode:
                    self._close(peer)
            for peer, path in wanted.items():
                if peer not in self._socks:
                    try:
                        self._bind(peer, path)
                    except OSError as e:
                        self.say(f"channel for {peer}: cannot bind {path}: {e.strerror or e}")

    def peers(self) -> list[str]:
        with self._lock:
            return sorted(self._socks)

    def stop(self) -> None:
        with self._lock:
            for peer in list(self._socks):
                self._close(peer)
            self._stopped = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=5)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _bind(self, peer: str, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # a stale socket of a supervisor that died
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with short_path(path) as where:
                sock.bind(where)
            os.chmod(path, 0o600)
            sock.listen(16)
        except BaseException:
            sock.close()
            raise
        sock.setblocking(False)
        self._socks[peer] = (path, sock, _inode(path))
        self.sel.register(sock, selectors.EVENT_READ, peer)
        os.write(self._wake_w, b"x")

    def _close(self, peer: str) -> None:
        path, sock, inode = self._socks.pop(peer)
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sock)
        sock.close()
        if _inode(path) == inode:
            path.unlink(missing_ok=True)

    def _loop(self) -> None:
        while not self._stopped:
            for key, _ev in self.sel.select():
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 4096)
                    continue
                try:
                    conn, _addr = key.fileobj.accept()  # type: ignore[union-attr]
                except (BlockingIOError, OSError):
                    continue
                conn.setblocking(True)
                threading.Thread(target=self._serve, args=(key.data, conn), daemon=True).start()

    def _serve(self, peer: str, conn: socket.socket) -> None:
        """One request: its identity is `peer`, the socket that accepted it."""
        with conn:
            uid = _peer_uid(conn)
            if uid not in (os.getuid(), None):  # another user on this machine: not one of our panes
                self.say(f"channel for {peer}: refused a connection from uid {uid}")
                why = f"fac: error: refused: this channel serves uid {os.getuid()}, not uid {uid}\n"
                with contextlib.suppress(OSError):
                    _fail(conn, why)
                    _drain(conn)
                return
            conn.settimeout(SILENCE)
            try:
                frame = recv_frame(conn)
                if frame is None or frame[0] != b"R":
                    return
                argv, cwd = _valid_request(frame[1])
            except (OSError, ValueError) as e:
                with contextlib.suppress(OSError):
                    _fail(conn, f"fac: error: a bad request on the channel ({e})\n")
                return
            conn.settimeout(None)
            try:
                run = self.plan(peer, argv, cwd)
                proc = subprocess.Popen(
                    run.argv,
                    env=run.env,
                    cwd=run.cwd,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,  # the whole request (checks included) stops with it
                )
            except (OSError, FacError) as e:
                with contextlib.suppress(OSError):
                    _fail(conn, f"fac: error: the supervisor could not run the request: {e}\n")
                return
            _Session(conn, proc).run()


def _peer_uid(conn: socket.socket) -> int | None:
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    uid: int = struct.unpack("3i", creds)[1]
    return uid


def _drain(conn: socket.socket, limit: int = REQUEST_MAX + CHUNK) -> None:
    """Read (and drop) what the client sent until it hangs up: closing on unread bytes would reset
    the connection, and the client would lose the answer already sent."""
    conn.shutdown(socket.SHUT_WR)
    conn.settimeout(KEEPALIVE)
    while limit > 0 and (data := conn.recv(CHUNK)):
        limit -= len(data)


def _inode(path: Path) -> int:
    try:
        return path.lstat().st_ino
    except OSError:
        return -1


def _fail(conn: socket.socket, line: str) -> None:
    send_frame(conn, b"e", line.encode())
    send_frame(conn, b"X", json.dumps({"code": 2}).encode())


class _Session:
    """One running request: its output to the client, the client's stdin to it, kept alive."""

    def __init__(self, conn: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        self.conn = conn
        self.proc = proc
        self.send_lock = threading.Lock()
        self.gone = threading.Event()  # the client hung up
        self.wake = threading.Event()  # the process ended, or the client hung up

    def _send(self, kind: bytes, payload: bytes = b"") -> None:
        with self.send_lock:
            send_frame(self.conn, kind, payload)

    def _out(self, stream: IO[bytes], kind: bytes) -> None:
        try:
            while data := os.read(stream.fileno(), CHUNK):
                self._send(kind, data)
        except OSError:
            self.gone.set()
            self.wake.set()

    def _in(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while True:
                frame = recv_frame(self.conn, limit=CHUNK * 4)
                if frame is None:
                    break
                kind, payload = frame
                if kind == b"I" and not stdin.closed:
                    with contextlib.suppress(BrokenPipeError):
                        stdin.write(payload)
                        stdin.flush()
                elif kind == b"E" and not stdin.closed:
                    with contextlib.suppress(BrokenPipeError):
                        stdin.close()
        except (OSError, ValueError):
            pass
        self.gone.set()  # the client closed its end: nobody reads the answer any more
        self.wake.set()
        with contextlib.suppress(OSError):
            stdin.close()

    def _reap(self) -> None:
        self.proc.wait()
        self.wake.set()

    def run(self) -> None:
        proc = self.proc
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [
            threading.Thread(target=self._out, args=(proc.stdout, b"O"), daemon=True),
            threading.Thread(target=self._out, args=(proc.stderr, b"e"), daemon=True),
        ]
        for t in pumps:
            t.start()
        threading.Thread(target=self._in, daemon=True).start()
        threading.Thread(target=self._reap, daemon=True).start()
        while True:
            self.wake.wait(KEEPALIVE)
            self.wake.clear()
            if proc.poll() is not None:
                break
            if self.gone.is_set():
                _kill_group(proc)
                break
            try:
                self._send(b"K")
            except OSError:
                self.gone.set()
        code = proc.wait()
        for t in pumps:
            t.join(timeout=5)
        proc.stdout.close()
        proc.stderr.close()
        with contextlib.suppress(OSError):
            self._send(b"X", json.dumps({"code": code if code >= 0 else 128 - code}).encode())


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
