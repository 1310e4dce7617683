#!/usr/bin/env bash
# Three deployments of one model under load (concurrency 50, non-streaming); mid-run one is
# killed (zero failed client requests expected; p99 reported), then one turned slow (2 s) with
# hedging off and on (p99 reported). Fake upstreams from ../shared/bench; loopback; bounded.
#   BENCH_SECONDS=15 (per scenario; the fault happens at a third of it)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
DUR=${BENCH_SECONDS:-15}; AT=$((DUR / 3))
PY=${PEERS_DIR:-/tmp/ailb-peers}/venv-tools/bin/python; [ -x "$PY" ] || PY=python3
OUT=${OUTDIR:-$ROOT/bench/results/failover-$(date +%Y%m%d-%H%M%S)}; mkdir -p "$OUT"
command -v wrk >/dev/null || { echo "wrk missing: run ../shared/bench/setup_peers.sh"; exit 1; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

upstream() {  # port delay_ms -> pid
  taskset -c 0 "$PY" "$SHARED/fake_upstream.py" --host 127.0.0.1 --port "$1" --delay-ms "$2" \
    >> "$OUT/upstream_$1.log" 2>&1 &
  echo $!
}
wait_url() { for _ in $(seq 100); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done; return 1; }

config() {  # hedging(true|false) -> yaml path
  local f="$OUT/ailb-$1.yaml"
  cat > "$f" <<YAML
deployments:
$(for p in 9101 9102 9103; do printf '  - {name: up%s, provider: openai, base_url: "http://127.0.0.1:%s/v1", models: [fake-model], timeouts: {connect: 1, first_byte: 5, idle: 5, total: 10}}\n' $p $p; done)
models:
  fake-model: {hedging: $1}
YAML
  echo "$f"
}

scenario() {  # name hedging fault(kill|slow)
  local name=$1 hedging=$2 fault=$3
  local u1 u2 u3; u1=$(upstream 9101 1); u2=$(upstream 9102 1); u3=$(upstream 9103 1)
  PIDS+=("$u1" "$u2" "$u3")
  for p in 9101 9102 9103; do wait_url "http://127.0.0.1:$p/health"; done
  AILB_CONFIG=$(config "$hedging") HOST=127.0.0.1 HTTP_PORT=8080 AILB_LOG_LEVEL=WARNING \
    taskset -c 1 "$ROOT/.venv/bin/ailb" serve > "$OUT/gw_$name.log" 2>&1 &
  local gw=$!; PIDS+=("$gw")
  wait_url http://127.0.0.1:8080/livez
  BODY_FILE=$SHARED/body.json timeout $((DUR + 30)) taskset -c 0 wrk -t1 -c50 -d"${DUR}s" \
    --timeout 30s --latency -s "$SHARED/post.lua" http://127.0.0.1:8080/v1/chat/completions \
    > "$OUT/wrk_$name.txt" 2>&1 &
  local load=$!
  sleep "$AT"
  kill "$u2"; wait "$u2" 2>/dev/null || true
  if [ "$fault" = slow ]; then u2=$(upstream 9102 2000); PIDS+=("$u2"); fi
  wait "$load" || true
  local r; r=$(grep '^RESULT' "$OUT/wrk_$name.txt" || echo "RESULT missing")
  printf '%-28s %s\n' "$name" "$(echo "$r" | tr ' ' '\n' | grep -E '^(requests|rps|p50_ms|p99_ms|max_ms|non2xx|connect_err|read_err|timeout)=' | tr '\n' ' ')"
  kill "$gw" "$u1" "$u2" "$u3" 2>/dev/null || true
  wait "$gw" "$u1" "$u2" "$u3" 2>/dev/null || true
  sleep 1
}

echo "three deployments, c=50, ${DUR}s each, fault at ${AT}s"
scenario "one killed" false kill
scenario "one slow (2 s), hedging off" false slow
scenario "one slow (2 s), hedging on" true slow
