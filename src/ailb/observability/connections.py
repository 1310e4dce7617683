"""Counting HTTP connections where they exist: in the server's protocol, not in ASGI.

ASGI shows requests, never connections (a keep-alive connection carries many requests and
`http.disconnect` is per request), and uvicorn offers no hook. So the gateway runs uvicorn with
a subclass of its httptools protocol -- one instance per TCP connection -- that counts
`connection_made` and `connection_lost` (asyncio calls each exactly once per connection).
Under another server, or a protocol not built here, both counts stay 0.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ailb.observability.metrics import ConnectionCounter


def counting_protocol(counter: ConnectionCounter) -> type[asyncio.Protocol]:
    """uvicorn's httptools protocol, counting into `counter` (one class per app: no shared
    state between gateways in one process)."""

    class CountingHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(  # type: ignore[override]
            self, transport: asyncio.Transport
        ) -> None:
            counter.total += 1
            counter.active += 1
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            counter.active -= 1
            super().connection_lost(exc)

        def handle_websocket_upgrade(self) -> None:
            # The connection moves to uvicorn's websocket protocol, whose connection_lost this
            # class never sees (the gateway has no websocket endpoint: it is refused and closed).
            counter.active -= 1
            super().handle_websocket_upgrade()

    return CountingHttpToolsProtocol
