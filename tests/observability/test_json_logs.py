"""Structured log lines: one JSON object each, no uvicorn colour duplicate."""

from __future__ import annotations

import json
import logging

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
