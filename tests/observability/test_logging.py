"""Logs are JSON lines, one object per line, without uvicorn's ANSI duplicate, and never carry a
credential: checked on the formatter and on the stderr of a real `ailb serve`."""

from __future__ import annotations

import io
import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from ailb.observability.logging import configure_logging
from tests.fakes.openai import fake_openai
from tests.fakes.server import Reply
from tests.test_cli import CLEAN_STOP, ServeProcess, clean_env, free_port

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
UVICORN = ("uvicorn", "uvicorn.error", "uvicorn.access")


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    """configure_logging into a buffer; the process-wide logging state is put back after."""
    root = logging.getLogger()
    saved_root = (root.handlers[:], root.level)
    saved = {
        n: (lg.handlers[:], lg.propagate, lg.level) for n in UVICORN if (lg := logging.getLogger(n))
    }
    stream = io.StringIO()
    configure_logging("DEBUG", stream)
    try:
        yield stream
    finally:
        root.handlers[:], level = saved_root
        root.setLevel(level)
        for name, (handlers, propagate, lvl) in saved.items():
            lg = logging.getLogger(name)
            lg.handlers[:] = handlers
            lg.propagate = propagate
            lg.setLevel(lvl)


def lines_of(stream: io.StringIO) -> list[dict[str, object]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    objects = [json.loads(line) for line in text.splitlines()]
    assert all(isinstance(o, dict) for o in objects)
    return objects


def test_every_record_is_one_json_object_on_one_line(log_stream: io.StringIO) -> None:
    log = logging.getLogger("ailb.test")
    log.info("deployment_up", extra={"deployment": "up0", "models": 2, "tags": ["a", "b"]})
    log.warning("two\nlines and ünïcode %s", "arg")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("unhandled_error", extra={"request_id": "req_1"})
    log.debug("detail")
    first, second, third, fourth = lines_of(log_stream)
    assert TS.match(str(first.pop("ts")))
    assert first == {
        "level": "info",
        "logger": "ailb.test",
        "event": "deployment_up",
        "deployment": "up0",
        "models": 2,
        "tags": ["a", "b"],
    }
    assert (second["level"], second["event"]) == ("warning", "two\nlines and ünïcode arg")
    assert (third["level"], third["event"], third["request_id"]) == (
        "error",
        "unhandled_error",
        "req_1",
    )
    assert str(third["exception"]).startswith("Traceback (most recent call last):")
    assert str(third["exception"]).endswith("ValueError: boom")
    assert (fourth["level"], fourth["event"]) == ("debug", "detail")


def test_uvicorn_records_lose_color_message(log_stream: io.StringIO) -> None:
    # What uvicorn itself does on start-up.
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]",
        4242,
        extra={"color_message": "Started server process [\x1b[36m%d\x1b[0m]"},
    )
    (line,) = lines_of(log_stream)
    assert "color_message" not in line
    assert "\x1b" not in log_stream.getvalue() and "\\u001b" not in log_stream.getvalue()
    assert (line["logger"], line["event"]) == ("uvicorn.error", "Started server process [4242]")


def test_uvicorn_loggers_go_through_the_json_handler(log_stream: io.StringIO) -> None:
    for name in UVICORN:
        assert logging.getLogger(name).handlers == [] and logging.getLogger(name).propagate
    logging.getLogger("uvicorn.access").info("GET / 200")  # below WARNING: dropped
    logging.getLogger("uvicorn.access").warning("odd request")
    assert [(line["logger"], line["event"]) for line in lines_of(log_stream)] == [
        ("uvicorn.access", "odd request")
    ]


# --- a real gateway's stderr ----------------------------------------------------------------

KEY = "sk-proj-LOGTEST-9f8e7d6c5b4a39281706"


def test_served_gateway_logs_json_lines_without_the_api_key(tmp_path: Path) -> None:
    upstream = fake_openai().start()
    port = free_port()
    env = clean_env(
        tmp_path,
        HOST="127.0.0.1",
        HTTP_PORT=str(port),
        GRPC_PORT="0",
        OPENAI_API_KEY=KEY,
        OPENAI_BASE_URL=f"{upstream.url}/v1",
        OPENAI_MODELS="gpt-test",
        AILB_LOG_LEVEL="DEBUG",  # the most the gateway ever logs
    )
    server = ServeProcess(["serve"], env, tmp_path, port)
    try:
        server.wait_ready()
        upstream.script(
            Reply(text="fine"),
            Reply(text="streamed fine"),
            # OpenAI's own 401 repeats the key it was given.
            Reply(
                status=401,
                error={
                    "error": {
                        "message": f"Incorrect API key provided: {KEY}. You can find your API "
                        "key at https://platform.openai.com/account/api-keys.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
            ),
        )
        with server.client() as client:
            ok = client.chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "hi"}]
            )
            streamed = "".join(
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(
                    model="gpt-test", messages=[{"role": "user", "content": "hi"}], stream=True
                )
                if c.choices
            )
            with pytest.raises(openai.APIStatusError) as rejected:
                client.chat.completions.create(
                    model="gpt-test", messages=[{"role": "user", "content": "hi"}]
                )
        stats = httpx2.get(f"{server.url}/api/routing/stats").text
        health = httpx2.get(f"{server.url}/healthz").text
    finally:
        code = server.stop()
        upstream.stop()
    assert (ok.choices[0].message.content, streamed) == ("fine", "streamed fine")
    # The key really was in use: the upstream got it on every call.
    sent = upstream.calls("/v1/chat/completions")
    assert len(sent) == 3
    assert {r.headers["Authorization"] for r in sent} == {f"Bearer {KEY}"}
    assert code in CLEAN_STOP

    logs = server.log_lines()
    events = [line["event"] for line in logs]
    assert "starting" in events and "upstream_credentials_rejected" in events
    assert [line["status"] for line in logs if line["logger"] == "ailb.access"] == [
        200,
        200,
        rejected.value.status_code,
    ]
    assert not [line for line in logs if "color_message" in line]
    assert all(set(line) >= {"ts", "level", "logger", "event"} for line in logs)
    for text in (server.stderr(), server.stdout(), rejected.value.response.text, stats, health):
        assert KEY not in text
        assert KEY[-12:] not in text  # not even a tail of it


def test_failing_probes_are_logged_without_the_api_key(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(
        tmp_path,
        HOST="127.0.0.1",
        HTTP_PORT=str(port),
        GRPC_PORT="0",
        ANTHROPIC_API_KEY=KEY,
        ANTHROPIC_BASE_URL=f"http://127.0.0.1:{free_port()}",  # nothing listens
        ANTHROPIC_MODELS="claude-test",
        AILB_LOG_LEVEL="DEBUG",
    )
    server = ServeProcess(["serve"], env, tmp_path, port)
    try:
        server.wait_ready()
        for _ in range(200):  # the first probe runs at start-up; bounded wait for its log line
            if "deployment_down" in server.stderr():
                break
            time.sleep(0.01)
    finally:
        code = server.stop()
    assert code in CLEAN_STOP
    logs = server.log_lines()
    (start,) = [line for line in logs if line["event"] == "starting"]
    assert start["deployments"][0]["api_key_env"] == "ANTHROPIC_API_KEY"
    (down,) = [line for line in logs if line["event"] == "deployment_down"]
    assert down["deployment"] == "anthropic"
    assert KEY not in server.stderr() and KEY[-12:] not in server.stderr()
