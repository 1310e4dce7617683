#!/usr/bin/env bash
# make bench: AILB beside direct, Portkey and LiteLLM in one run, then the ratios against the
# targets. Uses ../shared/bench (fake upstreams, wrk, peers). Loopback only; every load bounded.
#   BENCH_SECONDS=15  seconds per case      TARGETS="direct portkey litellm custom"
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
[ -x "$SHARED/run_bench.sh" ] || { echo "bench: $SHARED/run_bench.sh not found (../shared missing?)"; exit 1; }
"$SHARED/setup_peers.sh"
export OUTDIR=${OUTDIR:-$ROOT/bench/results/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUTDIR"
export AILB_BENCH_KEY=sk-bench
export GW_CMD="env AILB_CONFIG=$HERE/ailb-bench.yaml HOST=127.0.0.1 HTTP_PORT=8080 $ROOT/.venv/bin/ailb serve"
export GW_URL=http://127.0.0.1:8080/v1/chat/completions GW_READY=http://127.0.0.1:8080/livez
TARGETS=${TARGETS:-direct portkey litellm custom} "$SHARED/run_all.sh" "${BENCH_SECONDS:-15}"
# Start-up to first answered request, and idle RSS, with the upstreams up again.
PY=${PEERS_DIR:-/tmp/ailb-peers}/venv-tools/bin/python; [ -x "$PY" ] || PY=python3
taskset -c 0 "$PY" "$SHARED/fake_upstream.py" --port 9000 > "$OUTDIR/startup_up.log" 2>&1 & UP=$!
trap 'kill $UP 2>/dev/null || true' EXIT
sleep 0.5
"$ROOT/.venv/bin/python" "$HERE/startup.py" --config "$HERE/ailb-bench.yaml" > "$OUTDIR/startup.json"
"$ROOT/.venv/bin/python" "$HERE/report.py" "$OUTDIR"
