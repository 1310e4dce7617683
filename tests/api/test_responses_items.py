"""Stored input (chat messages) as Responses input items, and their pages: pure functions."""

from __future__ import annotations

from typing import Any

import pytest

from ailb.api.responses.items import input_items, page, page_params
from ailb.errors import InvalidRequest

CASES: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    (
        "user text",
        [{"role": "user", "content": "Hi"}],
        [
            {
                "id": "msg_s_0",
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [{"type": "input_text", "text": "Hi"}],
            }
        ],
    ),
    (
        "assistant text is output_text",
        [{"role": "assistant", "content": "Hello"}],
        [
            {
                "id": "msg_s_0",
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": "Hello"}],
            }
        ],
    ),
    (
        "image and file parts",
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,AA"}},
                ],
            }
        ],
        [
            {
                "id": "msg_s_0",
                "type": "message",
                "role": "user",
                "status": "completed",
                "content": [
                    {"type": "input_text", "text": "Look"},
                    {
                        "type": "input_image",
                        "image_url": "data:image/png;base64,AA",
                        "detail": "auto",
                    },
                    {"type": "input_file", "file_data": "data:application/pdf;base64,AA"},
                ],
            }
        ],
    ),
    (
        "tool calls and their output",
        [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ],
        [
            {
                "id": "fc_s_0_0",
                "type": "function_call",
                "call_id": "c1",
                "name": "f",
                "arguments": "{}",
                "status": "completed",
            },
            {
                "id": "fco_s_1",
                "type": "function_call_output",
                "call_id": "c1",
                "output": "done",
                "status": "completed",
            },
        ],
    ),
    ("an empty message lists nothing", [{"role": "user", "content": ""}], []),
]


@pytest.mark.parametrize(
    ("messages", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_input_items(messages, expected):
    assert input_items(messages, "s") == expected


ITEMS = [{"id": f"i{n}"} for n in range(5)]


@pytest.mark.parametrize(
    ("limit", "order", "after", "before", "ids", "more"),
    [
        (20, "desc", None, None, ["i4", "i3", "i2", "i1", "i0"], False),
        (2, "asc", None, None, ["i0", "i1"], True),
        (2, "asc", "i1", None, ["i2", "i3"], True),
        (2, "asc", "i3", None, ["i4"], False),
        (20, "desc", "i3", "i0", ["i2", "i1"], False),
        (20, "asc", None, "i0", [], False),
    ],
)
def test_page(limit, order, after, before, ids, more):
    got = page(ITEMS, limit, order, after, before)
    assert [i["id"] for i in got["data"]] == ids and got["has_more"] is more
    assert got["object"] == "list"
    assert (got["first_id"], got["last_id"]) == ((ids[0], ids[-1]) if ids else (None, None))


def test_page_with_an_unknown_cursor_is_a_400():
    with pytest.raises(InvalidRequest) as e:
        page(ITEMS, 20, "desc", "nope", None)
    assert e.value.param == "after"


@pytest.mark.parametrize(
    ("query", "param"),
    [({"limit": "0"}, "limit"), ({"limit": "x"}, "limit"), ({"order": "up"}, "order")],
)
def test_page_params_refuse_bad_values(query, param):
    with pytest.raises(InvalidRequest) as e:
        page_params(query)
    assert e.value.param == param and e.value.status == 400


def test_page_params_defaults():
    assert page_params({}) == (20, "desc", None, None)
    assert page_params({"limit": "100", "order": "asc", "after": "x"}) == (100, "asc", "x", None)
