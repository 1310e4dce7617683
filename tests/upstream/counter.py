"""A proxy.py plugin that only watches: one line per request the proxy carries (a CONNECT for
a tunnel, each absolute-form request on a plain connection), appended to the file named by
AILB_TEST_PROXY_LOG, so a test counts what really went through the proxy. Loaded by the
proxy.py process (`--plugins tests.upstream.counter.Counter`), never by the gateway."""

from __future__ import annotations

import os

from proxy.http.parser import HttpParser
from proxy.http.proxy import HttpProxyBasePlugin


class Counter(HttpProxyBasePlugin):
    def handle_client_request(self, request: HttpParser) -> HttpParser | None:
        method = (request.method or b"").decode()
        host = (request.host or b"").decode()
        path = (request.path or b"").decode() if method != "CONNECT" else ""
        with open(os.environ["AILB_TEST_PROXY_LOG"], "a") as f:
            f.write(f"{method} {host}:{request.port} {path}\n")
        return request
