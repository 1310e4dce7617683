"""Structured log lines: one JSON object each, no uvicorn colour duplicate."""

from __future__ import annotations

import json
import logging

from ailb.config import load_settings
from ailb.observability.logging import JSONFormatter


def test_extra_fields_kept_color_message_dropped():
    record = logging.LogRecord("uvicorn.error", logging.INFO, "x", 1, "Started %s", ("ok",), None)
    record.color_message = "\x1b[32mStarted ok\x1b[0m"
    record.deployment = "up0"
    line = JSONFormatter().format(record)
    obj = json.loads(line)
    assert obj["event"] == "Started ok" and obj["deployment"] == "up0" and obj["level"] == "info"
    assert "color_message" not in obj and "\n" not in line


def test_values_json_cannot_hold_are_logged_as_text():
    record = logging.LogRecord("ailb", logging.INFO, "x", 1, "event", (), None)
    record.obj = object()
    assert json.loads(JSONFormatter().format(record))["obj"].startswith("<object object")


def test_the_settings_secrets_are_redacted_and_a_reload_adds_its_own():
    settings = load_settings(
        {
            "AILB_MASTER_KEY": "master-key-0123456789",
            "OPENAI_API_KEY": "sk-openai-0123456789",
            "DATABASE_URL": "postgresql://ailb:p%40ss-word-42@db:5432/ailb",
        }
    )
    assert {
        "master-key-0123456789",
        "sk-openai-0123456789",
        "p%40ss-word-42",
        "p@ss-word-42",
    } <= set(settings.secrets())
    formatter = JSONFormatter(settings.secrets())
    record = logging.LogRecord(
        "ailb", logging.INFO, "x", 1, "key %s", ("sk-openai-0123456789",), None
    )
    record.detail = "password authentication failed for p@ss-word-42"
    obj = json.loads(formatter.format(record))
    assert obj["event"] == "key [redacted]" and obj["detail"].endswith("for [redacted]")
    later = logging.LogRecord("ailb", logging.INFO, "x", 1, "new key sk-new-key-98765", (), None)
    formatter.never_log("sk-new-key-98765", "short")  # a reload's; under 8 characters: kept
    assert json.loads(formatter.format(later))["event"] == "new key [redacted]"
    assert "short" in JSONFormatter(["short"]).format(
        logging.LogRecord("ailb", logging.INFO, "x", 1, "short", (), None)
    )
