"""Which key a request presents: table-driven over the header spellings clients use. Of
both headers, the first one that holds a key counts."""

from __future__ import annotations

import pytest

from ailb.auth.identity import ANONYMOUS, caller_id, owner_of, presented_bytes, presented_key

CASES = [
    ([(b"authorization", b"Bearer sk-1")], b"sk-1"),
    ([(b"authorization", b"bearer sk-1")], b"sk-1"),
    ([(b"authorization", b"BEARER   sk-1  ")], b"sk-1"),
    ([(b"x-api-key", b" sk-2 ")], b"sk-2"),
    ([(b"host", b"h"), (b"authorization", b"Bearer sk-1"), (b"x-api-key", b"sk-2")], b"sk-1"),
    ([(b"host", b"h"), (b"x-api-key", b"sk-2"), (b"authorization", b"Bearer sk-1")], b"sk-2"),
    ([(b"authorization", b"Basic dXNlcjpwdw=="), (b"x-api-key", b"sk-2")], b"sk-2"),
    ([(b"authorization", b"Bearer "), (b"x-api-key", b"sk-2")], b"sk-2"),
    ([(b"authorization", b"Bearer    ")], None),
    ([(b"authorization", b"Bearersk-1")], None),
    ([(b"x-api-key", b"   ")], None),
    ([(b"host", b"h")], None),
    ([], None),
]


@pytest.mark.parametrize(("headers", "expected"), CASES)
def test_presented_key(headers: list[tuple[bytes, bytes]], expected: bytes | None) -> None:
    scope = {"headers": headers}
    assert presented_bytes(scope) == expected
    assert presented_key(scope) == (None if expected is None else expected.decode())


def test_an_open_gateways_caller_is_a_hash_of_the_presented_key() -> None:
    one = caller_id({"headers": [(b"authorization", b"Bearer sk-1")]})
    assert one == caller_id({"headers": [(b"x-api-key", b"sk-1")]}) == owner_of("sk-1")
    assert one != caller_id({"headers": [(b"x-api-key", b"sk-2")]})
    assert caller_id({"headers": []}) == ANONYMOUS
