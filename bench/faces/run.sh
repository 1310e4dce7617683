#!/usr/bin/env bash
# Every inbound API's requests/s against chat's, measured in one run at c=10 (issue 20's
# target: /v1/responses translated to chat and /v1/messages passed through to an Anthropic-
# format upstream each at >= 85 % of chat, with zero errors). Rounds alternate the faces so
# the machine's drift hits them alike; the median round counts. Loopback only, bounded.
#   BENCH_SECONDS=10 seconds per case   FACE_ROUNDS=5
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
[ -f "$SHARED/fake_upstream.py" ] || { echo "bench: $SHARED not found (../shared missing?)"; exit 1; }
command -v wrk >/dev/null || "$SHARED/setup_peers.sh"
PY=${PEERS_DIR:-/tmp/ailb-peers}/venv-tools/bin/python; [ -x "$PY" ] || PY=$ROOT/.venv/bin/python
OUT=${OUTDIR:-$ROOT/bench/results/faces-$(date +%Y%m%d-%H%M%S)}; mkdir -p "$OUT"
DUR=${BENCH_SECONDS:-10}; ROUNDS=${FACE_ROUNDS:-5}
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
taskset -c 0 "$PY" "$SHARED/fake_upstream.py" --host 127.0.0.1 --port 9200 > "$OUT/openai_fake.log" 2>&1 &
PIDS+=($!)
taskset -c 0 "$ROOT/.venv/bin/python" "$HERE/fake_anthropic.py" --port 9201 > "$OUT/anthropic_fake.log" 2>&1 &
PIDS+=($!)
env AILB_CONFIG="$HERE/ailb-faces.yaml" AILB_BENCH_KEY=sk-bench HOST=127.0.0.1 HTTP_PORT=8090 \
    ENABLE_GRPC=false AILB_DATA_DIR="$OUT/data" \
    taskset -c 1 "$ROOT/.venv/bin/ailb" serve > "$OUT/gateway.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 300); do curl -sf -o /dev/null http://127.0.0.1:8090/livez && break; sleep 0.1; done
declare -A PATHS=([chat]=/v1/chat/completions [responses]=/v1/responses [messages]=/v1/messages)
for face in chat responses messages; do  # each face answers, with the fake's text
  out=$(curl -s -m 10 -H 'Content-Type: application/json' -d @"$HERE/body_$face.json" \
        "http://127.0.0.1:8090${PATHS[$face]}")
  echo "$out" | grep -q 'fixed reply from the fake upstream' || { echo "SANITY FAIL ($face): $out"; exit 1; }
done
printf "face\tround\trps\tp50_ms\tp99_ms\tnon2xx\tsock_err\n" > "$OUT/faces.tsv"
# Every face warms up, not only chat: a face's first seconds grow its journal segments and its
# tables (stored responses), which is start-up, not the steady state the rounds compare.
for face in chat responses messages; do
  BODY_FILE="$HERE/body_$face.json" timeout 60 taskset -c 0 wrk -t1 -c10 -d3s -s "$SHARED/post.lua" \
      "http://127.0.0.1:8090${PATHS[$face]}" > "$OUT/warmup_$face.txt" 2>&1
done
for round in $(seq "$ROUNDS"); do
  for face in chat responses messages; do
    f="$OUT/${face}_$round.txt"
    BODY_FILE="$HERE/body_$face.json" EXTRA_HEADERS="" timeout $((DUR + 60)) taskset -c 0 \
      wrk -t1 -c10 -d"${DUR}s" --timeout 30s --latency -s "$SHARED/post.lua" \
      "http://127.0.0.1:8090${PATHS[$face]}" > "$f" 2>&1
    r=$(grep '^RESULT' "$f")
    g() { echo "$r" | tr ' ' '\n' | grep "^$1=" | cut -d= -f2; }
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$face" "$round" "$(g rps)" "$(g p50_ms)" "$(g p99_ms)" \
      "$(g non2xx)" $(( $(g connect_err) + $(g read_err) + $(g write_err) + $(g timeout) )) \
      | tee -a "$OUT/faces.tsv"
  done
done
"$ROOT/.venv/bin/python" "$HERE/report.py" "$OUT/faces.tsv"
