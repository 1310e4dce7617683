#!/usr/bin/env bash
# The gateway with memory and RAG in use before the measured load: the store is open, the model
# loaded, a session stored and a collection searched, so the background writer, the expiry task
# and the embedder's worker exist. Readiness (for run_bench.sh) is the stored session's URL.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BASE=http://127.0.0.1:${HTTP_PORT:-8080}
"$ROOT/.venv/bin/ailb" serve & GW=$!
trap 'kill $GW 2>/dev/null || true' EXIT TERM INT
for _ in $(seq 300); do curl -sf -o /dev/null "$BASE/livez" && break; sleep 0.1; done
post() { curl -sf -m 60 -H 'Content-Type: application/json' -d "$2" "$BASE$1" > /dev/null; }
post /api/rag/collections '{"name": "warm"}'
post /api/rag/collections/warm/documents \
  '{"documents": [{"id": "a", "text": "The gateway answers on port 8080 and serves gRPC on 50051."}]}'
post /v1/chat/completions '{"model": "fake-model", "session_id": "bench-warm", "rag_collection": "warm",
  "messages": [{"role": "user", "content": "Which port does the gateway use?"}]}'
wait $GW
