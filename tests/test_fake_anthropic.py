"""The fake Messages API: the real `anthropic` client, over HTTP on 127.0.0.1, parses what it plays."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import anthropic
import pytest
from helpers import wait_for

from supervisor.fake_anthropic import DEFAULT_KEY, FakeAnthropic, text, tool, turn

HELLO = [{"role": "user", "content": "hello"}]


def client(fake: FakeAnthropic, **auth: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=fake.url, max_retries=0, timeout=10, **(auth or {"api_key": DEFAULT_KEY})
    )


def test_scripted_tool_use_turn_parses_in_the_real_client() -> None:
    with FakeAnthropic(
        [turn(text("Looking."), tool("list_dir", path="."), usage={"input_tokens": 7})]
    ) as fake:
        msg = client(fake).messages.create(model="claude-x", max_tokens=100, messages=HELLO)
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "claude-x"
    assert msg.stop_reason == "tool_use" and msg.stop_sequence is None
    assert msg.content[0].type == "text" and msg.content[0].text == "Looking."
    use = msg.content[1]
    assert use.type == "tool_use" and use.name == "list_dir" and use.input == {"path": "."}
    assert use.id.startswith("toolu_")
    assert msg.usage.input_tokens == 7 and msg.usage.output_tokens > 0
    assert fake.requests == [{"model": "claude-x", "max_tokens": 100, "messages": HELLO}]


def test_text_only_turn_ends_the_turn_and_an_exhausted_script_says_so() -> None:
    with FakeAnthropic([turn(text("Done."))]) as fake:
        c = client(fake)
        assert c.messages.create(model="m", max_tokens=10, messages=HELLO).stop_reason == "end_turn"
        extra = c.messages.create(model="m", max_tokens=10, messages=HELLO)
    assert "no more turns" in extra.content[0].text
    assert fake.exhausted == 1


@pytest.mark.parametrize("auth", [{"api_key": DEFAULT_KEY}, {"auth_token": DEFAULT_KEY}])
def test_accepts_the_key_as_x_api_key_or_bearer_token(auth: dict[str, str]) -> None:
    with FakeAnthropic([turn(text("ok"))]) as fake:
        assert (
            client(fake, **auth).messages.create(model="m", max_tokens=10, messages=HELLO).content[0].text
            == "ok"
        )


@pytest.mark.parametrize("auth", [{"api_key": "wrong"}, {"auth_token": "wrong"}])
def test_a_wrong_key_gets_the_real_apis_401(auth: dict[str, str]) -> None:
    with FakeAnthropic([turn(text("never"))]) as fake:
        with pytest.raises(anthropic.AuthenticationError) as e:
            client(fake, **auth).messages.create(model="m", max_tokens=10, messages=HELLO)
    assert e.value.status_code == 401
    assert e.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert fake.turns and not fake.requests  # the turn was not spent


def test_a_missing_key_is_refused() -> None:
    body = json.dumps({"model": "m", "max_tokens": 1, "messages": HELLO}).encode()
    with FakeAnthropic([turn(text("never"))]) as fake:
        req = urllib.request.Request(
            f"{fake.url}/v1/messages",
            data=body,
            method="POST",
            headers={"anthropic-version": "2023-06-01", "content-type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 401
    assert json.loads(e.value.read()) == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "x-api-key header is required"},
    }


def test_fail_next_answers_529_then_plays_the_script() -> None:
    with FakeAnthropic([turn(text("back"))]) as fake:
        fake.fail_next(2, 529)
        c = client(fake)
        for _ in range(2):
            with pytest.raises(anthropic.APIStatusError) as e:
                c.messages.create(model="m", max_tokens=10, messages=HELLO)
            assert e.value.status_code == 529
        assert c.messages.create(model="m", max_tokens=10, messages=HELLO).content[0].text == "back"
    assert [s for s, _ in fake.rejected] == [529, 529]


def test_a_tool_use_without_its_tool_result_is_a_400_like_the_real_api() -> None:
    with FakeAnthropic([turn(tool("check", id="toolu_1")), turn(text("never"))]) as fake:
        c = client(fake)
        first = c.messages.create(model="m", max_tokens=10, messages=HELLO)
        convo = [
            *HELLO,
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
            {"role": "user", "content": "what now?"},
        ]
        with pytest.raises(anthropic.BadRequestError) as e:
            c.messages.create(model="m", max_tokens=10, messages=convo)
        assert "toolu_1" in str(e.value)
        convo[-1] = {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "green"}],
        }
        c.messages.create(model="m", max_tokens=10, messages=convo)
    assert fake.tool_results() == [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "green"}]


def test_runs_as_a_process_with_a_script_file_and_a_port_file(tmp_path: Path) -> None:
    script = tmp_path / "turns.json"
    script.write_text(json.dumps({"key": "k-123", "turns": [turn(text("from a file"))]}), encoding="utf-8")
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "supervisor.fake_anthropic",
            "--script",
            str(script),
            "--port-file",
            str(port_file),
        ],
        stdout=subprocess.DEVNULL,
    )
    try:
        port = int(wait_for(lambda: port_file.is_file() and port_file.read_text(), message="the port file"))
        c = anthropic.Anthropic(
            base_url=f"http://127.0.0.1:{port}", api_key="k-123", max_retries=0, timeout=10
        )
        assert c.messages.create(model="m", max_tokens=10, messages=HELLO).content[0].text == "from a file"
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_a_streamed_turn_arrives_as_server_sent_events_in_pieces_the_real_client_joins() -> None:
    long_text = "I will write the file and then run the tests, " * 3
    with FakeAnthropic(
        [turn(text(long_text), tool("Write", file_path="a.py", content="x = 1\n" * 5))]
    ) as fake:
        with client(fake).messages.stream(model="m", max_tokens=100, messages=HELLO) as stream:
            kinds = [event.type for event in stream]
            msg = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"} <= set(kinds)
    assert msg.content[0].type == "text" and msg.content[0].text == long_text
    use = msg.content[1]
    assert use.type == "tool_use" and use.input == {"file_path": "a.py", "content": "x = 1\n" * 5}
    assert msg.stop_reason == "tool_use"


def test_the_raw_stream_splits_text_and_tool_input_in_several_deltas() -> None:
    with FakeAnthropic([turn(text("a" * 40), tool("Bash", command="python3 -m pytest -q"))]) as fake:
        req = urllib.request.Request(
            fake.url + "/v1/messages",
            data=json.dumps({"model": "m", "max_tokens": 10, "messages": HELLO, "stream": True}).encode(),
            headers={"x-api-key": DEFAULT_KEY, "anthropic-version": "2023-06-01"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            raw = resp.read().decode()
    events = [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ")]
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert sum(1 for d in deltas if d["type"] == "text_delta") > 1
    partial = [d["partial_json"] for d in deltas if d["type"] == "input_json_delta"]
    assert len(partial) > 1 and json.loads("".join(partial)) == {"command": "python3 -m pytest -q"}
    assert "ping" in [e["type"] for e in events]


def test_claude_codes_system_messages_and_side_requests_consume_no_scripted_turn() -> None:
    conversation = [
        {"role": "user", "content": "hello"},
        {"role": "system", "content": [{"type": "text", "text": "# Environment ..."}]},
    ]
    title = {
        "model": "m",
        "max_tokens": 100,
        "tools": [],
        "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."}],
        "messages": HELLO,
        "output_config": {
            "format": {"type": "json_schema", "schema": {"type": "object", "required": ["title"]}}
        },
    }
    with FakeAnthropic([turn(text("the real answer"))]) as fake:
        c = client(fake)
        named = c.post("/v1/messages", cast_to=object, body=title)
        counted = c.post("/v1/messages/count_tokens", cast_to=object, body={"model": "m", "messages": HELLO})
        probe = c.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "quota"}])
        msg = c.messages.create(model="m", max_tokens=10, messages=conversation)  # type: ignore[arg-type]
    assert json.loads(named["content"][0]["text"]) == {"title": "Fake session"}  # type: ignore[index]
    assert counted["input_tokens"] > 0  # type: ignore[index]
    assert probe.content[0].type == "text"
    assert msg.content[0].text == "the real answer"
    assert len(fake.requests) == 1 and len(fake.side) == 2
    assert ("POST", "/v1/messages/count_tokens") in fake.seen
