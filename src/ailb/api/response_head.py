"""The response head checked in one pass: the same bytes as uvicorn's, for less.

uvicorn's httptools cycle checks each response header on its own: two regular-expression
searches, a lower() and three comparisons, about 5k machine instructions a header. An answer
with the OpenAI rate-limit headers carries twelve, so that loop was the largest single cost of
rate limiting (more than admitting the request). This cycle applies the same two expressions once
to all the names and once to all the values (a character either expression refuses is refused
wherever it is), then writes exactly what uvicorn writes, joining the lines in C. Anything it
does not cover -- an invalid or upper-case header, a transfer-encoding or connection header, a
content-length given twice, a paused transport, a disconnected client, uvicorn's access log,
any message but the response start -- goes to uvicorn's own code, so errors and edge cases
behave as they always did. tests/api/test_response_head.py holds the two to the same bytes.
"""

from __future__ import annotations

from operator import itemgetter
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
_name, _value = itemgetter(0), itemgetter(1)


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
        # Python-level work here is a few dozen steps whatever the number of headers: the
        # names, the values and the lines are gathered and joined by C loops (map, join,
        # dict), where a loop over the headers took about forty steps a header.
        names = b"".join(map(_name, headers))
        values = b"".join(map(_value, headers))
        if len(names.translate(None, _NAME_REFUSED)) != len(names) or len(
            values.translate(None, _VALUE_REFUSED)
        ) != len(values):
            await super().send(message)  # it refuses the header, or lower-cases it
            return
        # The one header this path interprets is a single content-length: names containing
        # any of the three uvicorn interprets otherwise (or a length twice, or a name merely
        # containing one) take uvicorn's loop. Joined names have no separators, so a match
        # may straddle two names: that too only sends the head the long way.
        length = dict(headers).get(b"content-length")
        if (
            b"transfer-encoding" in names
            or b"connection" in names
            or names.count(b"content-length") != (length is not None)
        ):
            await super().send(message)
            return
        self.response_started = True
        self.waiting_for_100_continue = False
        status_code = message["status"]
        content = [STATUS_LINE[status_code]]
        if headers:
            content += (b"\r\n".join(map(b": ".join, headers)), b"\r\n")
        if length is not None:
            self.expected_content_length = int(length.decode())
            self.chunked_encoding = False
        if not self.keep_alive:
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
