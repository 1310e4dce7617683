"""The response head checked in one pass: the same bytes as uvicorn's, for less.

uvicorn's httptools cycle checks each response header on its own: two regular-expression
searches, a lower() and three comparisons, about 5k machine instructions a header. An answer
with the OpenAI rate-limit headers carries twelve, so that loop was the largest single cost of
rate limiting (more than admitting the request). This cycle applies the same two expressions once
to all the names and once to all the values (a character either expression refuses is refused
wherever it is), then writes exactly what uvicorn writes. Anything it does not cover --
an invalid or upper-case header, a paused transport, a disconnected client, uvicorn's access
log, any message but the response start -- goes to uvicorn's own code, so errors and edge cases
behave as they always did. tests/api/test_response_head.py holds the two to the same bytes.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import (
    HEADER_RE,
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)

# The bytes either expression matches, found by asking it about each of the 256 (so they are
# uvicorn's, whatever its version): deleting them with bytes.translate and comparing lengths is
# one table lookup a byte, where the regular expressions took about forty instructions. Names
# with upper-case letters go to uvicorn too, which lower-cases them.
_NAME_REFUSED = bytes(c for c in range(256) if HEADER_RE.match(bytes([c]))) + bytes(
    range(ord("A"), ord("Z") + 1)
)
_VALUE_REFUSED = bytes(c for c in range(256) if HEADER_VALUE_RE.match(bytes([c])))


class OnePassHeadCycle(RequestResponseCycle):
    async def send(self, message: Any) -> None:
        if (
            message["type"] != "http.response.start"
            or self.response_started
            or self.disconnected
            or self.flow.write_paused
            or self.access_log
        ):
            await super().send(message)
            return
        headers = self.default_headers + list(message.get("headers", []))
        names = b"".join([name for name, _ in headers])
        values = b"".join([value for _, value in headers])
        if len(names.translate(None, _NAME_REFUSED)) != len(names) or len(
            values.translate(None, _VALUE_REFUSED)
        ) != len(values):
            await super().send(message)  # it refuses the header, or lower-cases it
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        status_code = message["status"]
        content = [STATUS_LINE[status_code]]
        has_connection_close = False
        for name, value in headers:
            if name == b"content-length" and self.chunked_encoding is None:
                self.expected_content_length = int(value.decode())
                self.chunked_encoding = False
            elif name == b"transfer-encoding" and value.lower() == b"chunked":
                self.expected_content_length = 0
                self.chunked_encoding = True
            elif name == b"connection":
                connection = [token.lower().strip() for token in value.split(b",")]
                if b"close" in connection:
                    self.keep_alive = False
                    has_connection_close = True
            content += (name, b": ", value, b"\r\n")
        if not self.keep_alive and not has_connection_close:
            content.append(b"connection: close\r\n")
        if (
            self.chunked_encoding is None
            and self.scope["method"] != "HEAD"
            and status_code not in (204, 304)
        ):
            self.chunked_encoding = True  # neither content-length nor transfer-encoding
            content.append(b"transfer-encoding: chunked\r\n")
        content.append(b"\r\n")
        self.transport.write(b"".join(content))
