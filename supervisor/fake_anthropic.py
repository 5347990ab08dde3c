"""A small fake of the Anthropic Messages API for tests and `fac demo`: scripted answers, no network.

It listens on 127.0.0.1 (a random port by default) and answers `POST /v1/messages` with the next
scripted turn, in the JSON shape the real API uses, or as the real API's server-sent events when the
request says `"stream": true` (message_start, content_block_start, content_block_delta with text and
tool input split in several pieces, content_block_stop, message_delta, message_stop, and a ping), so
the real `anthropic` client and the real Claude Code both parse it. Claude Code's requests beside the
conversation (naming the session, `count_tokens`, a max_tokens=1 probe) get answers of their own and
never consume a scripted turn; its `system`-role messages between the turns are accepted. Like the
real API it wants a key (`x-api-key` or `Authorization: Bearer`), an `anthropic-version` header, and a
`tool_result` for every `tool_use` of the previous assistant turn; otherwise it answers with the real
API's error JSON. It records every request (so a test can read the tool results an agent sent back)
and can be told to fail the next N requests (529 overloaded, 500, 429) to exercise retries.

A turn in a script is a dict: `{"content": [blocks], "stop_reason": ..., "usage": {...}}`; only
`content` is needed. `tool_use` blocks get ids when they have none; `stop_reason` defaults to
"tool_use" when a turn calls a tool, else "end_turn"; `usage` defaults to an estimate (about four
characters a token). Build blocks with `text("...")` and `tool("name", arg=...)`.

As a process (what `fac demo` runs):

    python -m supervisor.fake_anthropic --script turns.json --port-file port.txt [--key KEY]

The script file is a JSON list of turns, or an object {"turns": [...], "key": "..."}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import sys
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from supervisor import wake

DEFAULT_KEY = "fac-fake-key"
EXHAUSTED = "(fake Anthropic server: the script has no more turns)"
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def text(t: str) -> dict[str, Any]:
    """A text block."""
    return {"type": "text", "text": t}


def tool(name: str, id: str | None = None, **input: Any) -> dict[str, Any]:
    """A tool_use block; the server gives it an id when `id` is None."""
    block: dict[str, Any] = {"type": "tool_use", "name": name, "input": input}
    if id:
        block["id"] = id
    return block


def turn(
    *blocks: dict[str, Any], stop_reason: str | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """One scripted assistant turn."""
    t: dict[str, Any] = {"content": list(blocks)}
    if stop_reason:
        t["stop_reason"] = stop_reason
    if usage:
        t["usage"] = usage
    return t


class FakeAnthropic:
    """The server; `with FakeAnthropic(turns) as fake:` starts it in a thread and stops it after."""

    def __init__(
        self, turns: Iterable[dict[str, Any]] = (), *, key: str = DEFAULT_KEY, port: int = 0
    ) -> None:
        self.key = key
        self.turns: list[dict[str, Any]] = list(turns)
        self.requests: list[dict[str, Any]] = []  # bodies of the requests that got a scripted answer
        self.side: list[dict[str, Any]] = []  # bodies of side requests (titles, probes), answered aside
        self.seen: list[tuple[str, str]] = []  # (method, path) of every request, in order
        self.rejected: list[tuple[int, str]] = []  # (status, message) of every error answered
        self.exhausted = 0  # requests that came after the script ran out
        self._lock = threading.RLock()
        self._fail: list[int] = []
        self._ids = itertools.count(1)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    # --- control ---

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL to give the client (ANTHROPIC_BASE_URL)."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeAnthropic:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="fake-anthropic", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def add(self, *turns: dict[str, Any]) -> None:
        """More scripted turns, played after the ones already queued."""
        with self._lock:
            self.turns.extend(turns)

    def fail_next(self, n: int, status: int = 529) -> None:
        """The next `n` well-formed requests get `status` (529 overloaded, 500, 429) instead of a turn."""
        with self._lock:
            self._fail.extend([status] * n)

    def tool_results(self, request: int = -1) -> list[dict[str, Any]]:
        """The tool_result blocks of the last user message of a recorded request."""
        last = self.requests[request]["messages"][-1]
        content = last["content"] if isinstance(last["content"], list) else []
        return [b for b in content if b.get("type") == "tool_result"]

    # --- answering ---

    def answer(self, headers: dict[str, str], path: str, raw: bytes) -> tuple[int, dict[str, Any], bool]:
        """(status, JSON body, stream it as SSE?) for one request; the HTTP handler only moves bytes."""
        endpoint = path.split("?")[0].rstrip("/")
        with self._lock:
            self.seen.append(("POST", endpoint))
        if endpoint not in ("/v1/messages", "/v1/messages/count_tokens"):
            return self._refuse(404, f"{path} is not an endpoint of this fake (only POST /v1/messages)")
        given = headers.get("x-api-key") or _bearer(headers.get("authorization", ""))
        if not given:
            return self._refuse(401, "x-api-key header is required")
        if given != self.key:
            return self._refuse(401, "invalid x-api-key")
        if not headers.get("anthropic-version"):
            return self._refuse(400, "anthropic-version: header is required")
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as e:
            return self._refuse(400, f"the request body is not JSON: {e}")
        if endpoint.endswith("/count_tokens"):  # Claude Code measures its context: no turn consumed
            return 200, {"input_tokens": max(1, len(json.dumps(body)) // 4)}, False
        problem = _validate(body)
        if problem:
            return self._refuse(400, problem)
        stream = bool(body.get("stream"))
        with self._lock:
            if self._fail:
                status = self._fail.pop(0)
                return self._refuse(status, "Overloaded" if status == 529 else "Internal server error")
            n = next(self._ids)
            if is_side_request(body):
                self.side.append(body)
                return 200, self._message(n, body, side_answer(body)), stream
            self.requests.append(body)
            scripted = self.turns.pop(0) if self.turns else None
            if scripted is None:
                self.exhausted += 1
        return 200, self._message(n, body, scripted or {"content": [text(EXHAUSTED)]}), stream

    def _message(self, n: int, request: dict[str, Any], scripted: dict[str, Any]) -> dict[str, Any]:
        content = []
        for i, block in enumerate(scripted.get("content", [])):
            block = dict(block)
            if block.get("type") == "tool_use":
                block.setdefault("id", f"toolu_fake_{n:04d}_{i}")
                block.setdefault("input", {})
            content.append(block)
        calls_tool = any(b.get("type") == "tool_use" for b in content)
        usage = {
            "input_tokens": max(1, len(json.dumps(request)) // 4),
            "output_tokens": max(1, len(json.dumps(content)) // 4),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        usage.update(scripted.get("usage", {}))
        return {
            "id": f"msg_fake_{n:04d}",
            "type": "message",
            "role": "assistant",
            "model": request.get("model", "fake"),
            "content": content,
            "stop_reason": scripted.get("stop_reason") or ("tool_use" if calls_tool else "end_turn"),
            "stop_sequence": None,
            "usage": usage,
        }

    def _refuse(self, status: int, message: str) -> tuple[int, dict[str, Any], bool]:
        return (*self._error(status, message), False)

    def _error(self, status: int, message: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.rejected.append((status, message))
        kind = ERROR_TYPES.get(status, "api_error")
        return status, {"type": "error", "error": {"type": kind, "message": message}}


def _bearer(value: str) -> str:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _validate(body: Any) -> str | None:
    """What the real API would refuse with a 400, as far as a client bug could cause it."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    msgs = body["messages"]
    if not isinstance(msgs, list) or not msgs:
        return "messages: at least one message is required"
    if msgs[0].get("role") != "user":
        return "messages: the first message must use the user role"
    # Claude Code puts `system`-role messages (its notes on the environment) between the turns; user
    # and assistant must alternate among the others.
    turns: list[tuple[int, dict[str, Any]]] = []
    for i, m in enumerate(msgs):
        if m.get("role") not in ("user", "assistant", "system"):
            return f"messages.{i}.role: must be user, assistant or system"
        if m.get("role") != "system":
            turns.append((i, m))
    for k, (i, m) in enumerate(turns):
        if k and m.get("role") == turns[k - 1][1].get("role"):
            return f"messages.{i}: roles must alternate between user and assistant"
        if m.get("role") != "assistant" or not isinstance(m.get("content"), list):
            continue
        ids = [b.get("id") for b in m["content"] if b.get("type") == "tool_use"]
        if not ids:
            continue
        j, nxt = turns[k + 1] if k + 1 < len(turns) else (i + 1, None)
        blocks = nxt["content"] if nxt and isinstance(nxt.get("content"), list) else []
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        missing = [x for x in ids if x not in results]
        if missing:
            return (
                f"messages.{j}: `tool_use` ids were found without `tool_result` blocks immediately "
                f"after: {', '.join(map(str, missing))}"
            )
        kinds = [b.get("type") for b in blocks]
        if kinds[: len(results)] != ["tool_result"] * len(results):
            return f"messages.{j}: tool_result blocks must come first in the user message"
    return None


def is_side_request(body: dict[str, Any]) -> bool:
    """One of Claude Code's requests beside the conversation? It names each session (a request with
    no tools asking for a JSON title) and may probe its quota (max_tokens 1): those get an answer of
    their own and never consume a scripted turn."""
    if body.get("max_tokens") == 1:
        return True
    return not body.get("tools") and "Claude Code" in _system_text(body)


def side_answer(body: dict[str, Any]) -> dict[str, Any]:
    """A short answer that fits what a side request asks for (the fields of its JSON schema, if any)."""
    fmt = (body.get("output_config") or {}).get("format") or {}
    schema = fmt.get("schema") or {}
    if fmt.get("type") == "json_schema" and schema.get("type") == "object":
        fields = schema.get("required") or list(schema.get("properties", {}))
        return {"content": [text(json.dumps(dict.fromkeys(fields, "Fake session")))]}
    return {"content": [text("Fake session")]}


def _system_text(body: dict[str, Any]) -> str:
    system = body.get("system")
    if isinstance(system, list):
        return "\n".join(str(b.get("text", "")) for b in system if isinstance(b, dict))
    return str(system or "")


CHUNK = 12  # characters per text_delta / input_json_delta: every block arrives in several pieces


def sse_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The server-sent events the real API streams for `message`, in order, deltas split in pieces."""
    usage = message["usage"]
    head = {**message, "content": [], "stop_reason": None, "stop_sequence": None}
    head["usage"] = {**usage, "output_tokens": 1}
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": head})]
    events.append(("ping", {"type": "ping"}))
    for i, block in enumerate(message["content"]):
        if block.get("type") == "tool_use":
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            whole, kind, key = json.dumps(block.get("input", {})), "input_json_delta", "partial_json"
        elif block.get("type") == "text":
            start = {"type": "text", "text": ""}
            whole, kind, key = str(block.get("text", "")), "text_delta", "text"
        else:  # any other block arrives whole in its start event
            start, whole, kind, key = block, "", "", ""
        events.append(
            ("content_block_start", {"type": "content_block_start", "index": i, "content_block": start})
        )
        for j in range(0, len(whole), CHUNK):
            delta = {"type": kind, key: whole[j : j + CHUNK]}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": i, "delta": delta})
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    tail = {"type": "message_delta", "delta": stop, "usage": {"output_tokens": usage["output_tokens"]}}
    events.append(("message_delta", tail))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _handler(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client expects from the real API

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body, stream = fake.answer(headers, self.path, raw)
            if stream and status == 200:
                self._stream(body)
            else:
                self._send(status, body)

        def do_GET(self) -> None:
            with fake._lock:
                fake.seen.append(("GET", self.path.split("?")[0]))
            self._send(*fake._error(404, f"{self.path}: only POST /v1/messages is served"))

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("request-id", f"req_fake_{id(body):x}")
            if status == 429:  # like the real API: a rate limit says when to come back
                self.send_header("retry-after", "1")
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, message: dict[str, Any]) -> None:
            # One chunk per event, flushed, as the real API streams: the client must join the pieces.
            self.send_response(200)
            self.send_header("content-type", "text/event-stream; charset=utf-8")
            self.send_header("cache-control", "no-cache")
            self.send_header("transfer-encoding", "chunked")
            self.send_header("request-id", f"req_fake_{message['id']}")
            self.end_headers()
            for event, data in sse_events(message):
                chunk = f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (quiet: no access log)
            pass

    return Handler


def load_script(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """Turns (and an optional key) from a script file."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, list):
        return data, None
    return list(data.get("turns", [])), data.get("key")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m supervisor.fake_anthropic", description=__doc__.split("\n")[0]
    )
    p.add_argument("--script", type=Path, required=True, help="JSON file: a list of turns")
    p.add_argument("--port-file", type=Path, help="write the port here once listening")
    p.add_argument("--port", type=int, default=0, help="default: a free port")
    p.add_argument("--key", help=f"the key clients must send (default: the script's, else {DEFAULT_KEY})")
    args = p.parse_args(argv)
    turns, script_key = load_script(args.script)
    fake = FakeAnthropic(turns, key=args.key or script_key or DEFAULT_KEY, port=args.port)
    if args.port_file:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(str(fake.port), encoding="utf-8")
        tmp.replace(args.port_file)  # readers never see a half-written port
    print(f"fake Anthropic API on {fake.url} ({len(turns)} scripted turns)", flush=True)
    # shutdown() waits for serve_forever to return: from a thread, never from the handler itself.
    wake.on_signal(signal.SIGTERM, fake._httpd.shutdown)
    try:
        fake._httpd.serve_forever(0.05)
    except KeyboardInterrupt:
        pass
    finally:
        fake._httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
