#!/usr/bin/env bash
# What keys, rate limits and usage recording cost on the hot path (issue 5: >= 85 % of req/s).
# ../shared/bench/run_bench.sh loads the gateway (on CPU 1) ROUNDS times in each mode:
#   off       this build with them off: no AILB_MASTER_KEY and ENABLE_USAGE=false
#   embedded  this build, AILB_MASTER_KEY set, a key with rpm, tpm and a budget checked on every
#             request (limits far above the load, so nothing is refused), usage to SQLite
#   shared    the same with REDIS_URL and DATABASE_URL (PostgreSQL on 127.0.0.1)
# and, to see where the cost is (MODES="off before open keyonly embedded"):
#   before    AILB before keys, limits and usage existed (commit $BASE_REV, run from a worktree)
#   open      this build without AILB_MASTER_KEY (usage recorded, nothing checked)
#   keyonly   a key without limits (authentication and usage, no admission)
# and report.py prints the median req/s of each mode and the ratios to off.
#   ROUNDS=3  SECONDS_PER_CASE=10  CASES="c10"  MODES="off embedded shared"
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
SHARED=${SHARED_BENCH:-$ROOT/../shared/bench}
[ -x "$SHARED/run_bench.sh" ] || { echo "bench: $SHARED/run_bench.sh not found (../shared missing?)"; exit 1; }
"$SHARED/setup_peers.sh"  # wrk and the fake upstream's venv (once per machine)
BASE_REV=${BASE_REV:-dbc92ff}
OUT=${OUTDIR:-$ROOT/bench/results/accounts-$(date +%Y%m%d-%H%M%S)}
WORK=$(mktemp -d)
cleanup() { git -C "$ROOT" worktree remove --force "$WORK/before" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
if [[ " ${MODES:-} " == *" before "* ]]; then
  git -C "$ROOT" worktree add --detach "$WORK/before" "$BASE_REV" > /dev/null
fi
export AILB_BENCH_KEY=sk-bench CASES=${CASES:-c10} AILB_MASTER_KEY=bench-master-key-0123456789
export GW_URL=http://127.0.0.1:8080/v1/chat/completions GW_READY=http://127.0.0.1:8080/livez
export DATABASE_SCHEMA=bench_$RANDOM$RANDOM REDIS_PREFIX=ailb-bench-$RANDOM:
PG=${BENCH_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/test}
RD=${BENCH_REDIS_URL:-redis://127.0.0.1:6379/0}
COMMON="AILB_CONFIG=$ROOT/bench/ailb-bench.yaml HOST=127.0.0.1 HTTP_PORT=8080 ENABLE_MEMORY=false"
for round in $(seq "${ROUNDS:-3}"); do
  for mode in ${MODES:-off embedded shared}; do
    data=$WORK/data-$mode-$round; mkdir -p "$data"
    case $mode in
      off) GW_CMD="env -u AILB_MASTER_KEY $COMMON AILB_DATA_DIR=$data ENABLE_USAGE=false $ROOT/.venv/bin/ailb serve";;
      before) # the old code, imported ahead of this checkout's
        GW_CMD="env -u AILB_MASTER_KEY $COMMON AILB_DATA_DIR=$data PYTHONPATH=$WORK/before/src $ROOT/.venv/bin/python -m ailb serve";;
      open) GW_CMD="env -u AILB_MASTER_KEY $COMMON AILB_DATA_DIR=$data $ROOT/.venv/bin/ailb serve";;
      embedded|keyonly) SVC="AILB_DATA_DIR=$data";;
      shared) SVC="AILB_DATA_DIR=$data DATABASE_URL=$PG AILB_DATABASE_SCHEMA=$DATABASE_SCHEMA REDIS_URL=$RD AILB_REDIS_PREFIX=$REDIS_PREFIX";;
    esac
    if [ "$mode" != off ] && [ "$mode" != before ] && [ "$mode" != open ]; then
      limits="--rpm 1000000000 --tpm 1000000000 --budget-usd 1000000000 --budget-period day"
      [ "$mode" = keyonly ] && limits=""
      # shellcheck disable=SC2086
      key=$(env $SVC "$ROOT/.venv/bin/ailb" keys create --name "bench-$mode-$round" $limits \
        | "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["key"])')
      GW_CMD="env $COMMON $SVC $ROOT/.venv/bin/ailb serve"
      export GW_HEADERS="Authorization: Bearer $key"
    else
      export GW_HEADERS="Authorization: Bearer sk-anything"
    fi
    echo "== round $round, $mode"
    OUTDIR=$OUT/$mode-$round GW_CMD=$GW_CMD "$SHARED/run_bench.sh" custom "${SECONDS_PER_CASE:-10}"
  done
done
"$ROOT/.venv/bin/python" "$HERE/report.py" "$OUT" "${SECONDS_PER_CASE:-10}"
if [[ " ${MODES:-off embedded shared} " == *" shared "* ]]; then
  "$ROOT/.venv/bin/python" - "$PG" "$DATABASE_SCHEMA" <<'PY'
import asyncio, sys, asyncpg
async def drop(dsn, schema):
    c = await asyncpg.connect(dsn)
    try:
        await c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await c.close()
asyncio.run(drop(sys.argv[1], sys.argv[2]))
PY
fi
