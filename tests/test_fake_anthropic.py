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
