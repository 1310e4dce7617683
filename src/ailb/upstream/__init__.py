"""AILB's client of upstream servers: an HTTP/1.1 connection pool with the four timeouts
(http), egress proxies (egress), and what every provider and embedder shares on top (transport:
request heads, status errors, SSE and NDJSON decoding)."""
