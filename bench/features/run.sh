#!/usr/bin/env bash
# Requests without session_id or rag_collection cost nothing when memory and RAG are on.
# ../shared/bench/run_bench.sh loads the gateway (on CPU 1) with plain chat requests, ROUNDS
# times alternately with ENABLE_MEMORY/ENABLE_RAG off and on (on: both in use beforehand, see
# serve_warm.sh), and report.py prints the median req/s of each and the ratio on/off.
#   ROUNDS=3  SECONDS_PER_CASE=10  CASES="c10 c100 c10_stream"
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
[ -x "$SHARED/run_bench.sh" ] || { echo "bench: $SHARED/run_bench.sh not found (../shared missing?)"; exit 1; }
"$SHARED/setup_peers.sh"  # wrk and the fake upstream's venv (once per machine)
OUT=${OUTDIR:-$ROOT/bench/results/features-$(date +%Y%m%d-%H%M%S)}
DATA=$(mktemp -d); trap 'rm -rf "$DATA"' EXIT
export AILB_BENCH_KEY=sk-bench CASES=${CASES:-c10 c100 c10_stream}
export GW_URL=http://127.0.0.1:8080/v1/chat/completions
COMMON="AILB_CONFIG=$ROOT/bench/ailb-bench.yaml HOST=127.0.0.1 HTTP_PORT=8080 AILB_DATA_DIR=$DATA"
for round in $(seq "${ROUNDS:-3}"); do
  for mode in off on; do
    if [ $mode = off ]; then
      GW_CMD="env $COMMON ENABLE_MEMORY=false ENABLE_RAG=false $ROOT/.venv/bin/ailb serve"
      GW_READY=http://127.0.0.1:8080/livez
    else
      rm -rf "${DATA:?}"/*
      GW_CMD="env $COMMON ENABLE_MEMORY=true ENABLE_RAG=true $HERE/serve_warm.sh"
      GW_READY=http://127.0.0.1:8080/api/sessions/bench-warm
    fi
    echo "== round $round, memory and RAG $mode"
    OUTDIR=$OUT/$mode-$round GW_CMD=$GW_CMD GW_READY=$GW_READY \
      "$SHARED/run_bench.sh" custom "${SECONDS_PER_CASE:-10}"
  done
done
"$ROOT/.venv/bin/python" "$HERE/report.py" "$OUT"
