#!/usr/bin/env bash
# Machine instructions per request in the gateway process, counted by valgrind (cachegrind):
# deterministic where requests/s on this shared machine drift by 20 % between runs, so a change
# of a few percent on the request path shows. The gateway is served by uvicorn as in production,
# a client sends N requests one after another to the shared bench's fake upstream; a run of
# N=1000 is subtracted from a run of N+1000, so start-up and shutdown cancel out.
#   bench/instructions/run.sh [FACE ...]   FACE: chat responses nostore messages (default all)
#   N=2000 requests per count. Loopback only, bounded; needs valgrind (apt-get install valgrind).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
command -v valgrind >/dev/null || { echo "valgrind is not installed"; exit 1; }
N=${N:-2000}; FACES=${*:-chat responses nostore messages}
D=$(mktemp -d); PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$D"' EXIT
"$ROOT/.venv/bin/python" "$SHARED/fake_upstream.py" --host 127.0.0.1 --port 9411 >/dev/null 2>&1 &
PIDS+=($!)
"$ROOT/.venv/bin/python" "$ROOT/bench/faces/fake_anthropic.py" --port 9412 >/dev/null 2>&1 &
PIDS+=($!)
sed -e 's#9200#9411#; s#9201#9412#' "$ROOT/bench/faces/ailb-faces.yaml" > "$D/ailb.yaml"
count() {  # count FACE REQUESTS PORT -> instructions of the whole gateway run
  local face=$1 n=$2 port=$3
  env PYTHONHASHSEED=0 AILB_CONFIG="$D/ailb.yaml" AILB_BENCH_KEY=sk-bench HOST=127.0.0.1 \
      HTTP_PORT="$port" ENABLE_GRPC=false AILB_DATA_DIR="$D/data-$face-$n" \
      valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null \
      "$ROOT/.venv/bin/ailb" serve > "$D/log-$face-$n" 2>&1 &
  local vp=$!
  for _ in $(seq 900); do curl -sf -o /dev/null "http://127.0.0.1:$port/livez" && break; sleep 0.1; done
  "$ROOT/.venv/bin/python" - "$face" "$n" "$port" <<'PY'
import sys
import httpx
face, n, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
hello = [{"role": "user", "content": "Hello"}]
cases = {
    "chat": ("/v1/chat/completions", {"model": "fake-model", "messages": hello}),
    "responses": ("/v1/responses", {"model": "fake-model", "input": "Hello"}),
    "nostore": ("/v1/responses", {"model": "fake-model", "input": "Hello", "store": False}),
    "messages": ("/v1/messages", {"model": "claude-fake", "max_tokens": 64, "messages": hello}),
}
path, body = cases[face]
with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
    for _ in range(n):
        r = client.post(path, json=body)
        assert r.status_code == 200, r.text
PY
  kill -INT "$vp"; wait "$vp" || true
  grep -E "I\s+refs" "$D/log-$face-$n" | awk '{gsub(",", "", $4); print $4}'
}
port=8491
for face in $FACES; do
  a=$(count "$face" 1000 $port); b=$(count "$face" $((N + 1000)) $((port + 1))); port=$((port + 2))
  printf "%s\t%d instructions/request\n" "$face" $(( (b - a) / N ))
done
