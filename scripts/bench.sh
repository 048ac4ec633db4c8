#!/usr/bin/env bash
# bench.sh: one LoRA training step (rank 16 on all seven modules, batch 4 x
# 256 tokens, forward + backward) of the C engine and of the same step in
# PyTorch, at three shapes with random weights, same thread count, each
# implementation and shape in its own process. Prints a Markdown table and
# writes it (with the raw JSON lines) under <build-dir>/bench/.
#
#   scripts/bench.sh [--quick] [--threads N] [--repeat N] [--build-dir DIR]
#                    [--shapes "stories260k stories15m qwen2.5-0.5b"] [--no-torch]
#
#   --quick      fewer steps (small shapes: 2 steps, 0.5B: 1 step; 1 warm-up)
#   --threads N  OPENBLAS_NUM_THREADS = OMP_NUM_THREADS = N and
#                torch.set_num_threads(N) (default 2)
#   --repeat N   run the C / PyTorch pair N times per shape, alternating, and
#                keep each side's best run (default 2 for the small shapes,
#                1 for qwen2.5-0.5b, whose PyTorch step takes ~40 s and ~11 GB)
#   --build-dir  CMake build directory (default: build)
#   --wait-idle S  before each run, wait up to S seconds (default 600) until
#                other processes use < 0.25 CPU; 0 = do not wait
# The share of the machine used by other processes during each run is
# measured (/proc/stat minus the run's own CPU time) and shown in the table:
# on a shared machine, results with a high "other load" are not comparable.
# Other variables in the environment (OMP_WAIT_POLICY, OPENBLAS_CORETYPE, ...)
# reach both implementations unchanged and are recorded in the results.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BUILD=build
THREADS=2
QUICK=0
REPEAT=
SHAPES="stories260k stories15m qwen2.5-0.5b"
TORCH=1
WAIT_IDLE=600
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --threads) THREADS=$2; shift ;;
    --repeat) REPEAT=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    --shapes) SHAPES=$2; shift ;;
    --no-torch) TORCH=0 ;;
    --wait-idle) WAIT_IDLE=$2; shift ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# ---- build ----------------------------------------------------------------
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" -j2 --target bench_step >/dev/null
BIN="$BUILD/bin/bench_step"
[ -x "$BIN" ] || { echo "bench.sh: $BIN was not built" >&2; exit 1; }
if [ "$TORCH" = 1 ] && ! "$PY" -c "import torch" 2>/dev/null; then
  echo "bench.sh: PyTorch not importable with $PY; running the C side only" >&2
  TORCH=0
fi

export OPENBLAS_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
OUT="$BUILD/bench"
mkdir -p "$OUT"
STAMP=$(date +%Y%m%d-%H%M%S)
RAW="$OUT/raw-$STAMP.jsonl"
MD="$OUT/results-$STAMP.md"
: >"$RAW"

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

HZ=$(getconf CLK_TCK)
NCPU=$(nproc)
busy_jiffies() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9; exit}' /proc/stat; }

# Waits until other processes use < 0.25 CPU (sampled over 2 s), at most
# WAIT_IDLE seconds.
wait_idle() {
  local waited=0 b0 b1 busy
  while :; do
    b0=$(busy_jiffies); sleep 2; b1=$(busy_jiffies)
    busy=$(awk -v a="$b0" -v b="$b1" -v hz="$HZ" 'BEGIN{printf "%.2f", (b-a)/hz/2}')
    if awk -v x="$busy" 'BEGIN{exit !(x < 0.25)}' || [ "$waited" -ge "$WAIT_IDLE" ]; then
      [ "$waited" -gt 0 ] && log "other processes now use $busy CPUs; going on"
      return 0
    fi
    [ "$waited" -eq 0 ] && log "other processes use $busy CPUs; waiting up to ${WAIT_IDLE}s for idle"
    sleep 8; waited=$((waited + 10))
  done
}

# Runs a command that prints one JSON line; appends it to $RAW with
# "other_cpu_frac": the share of all CPUs used by other processes meanwhile.
run_json() {
  [ "$WAIT_IDLE" -gt 0 ] && wait_idle
  local b0 b1 t0 t1 line
  b0=$(busy_jiffies); t0=$(date +%s.%N)
  line=$("$@")
  b1=$(busy_jiffies); t1=$(date +%s.%N)
  "$PY" -c '
import json, sys
r = json.loads(sys.argv[1])
b0, b1, t0, t1, hz, n = map(float, sys.argv[2:8])
other = (b1 - b0) / hz - r.get("cpu_s", 0.0)
r["wall_s"] = round(t1 - t0, 3)
r["other_cpu_frac"] = round(max(0.0, other) / ((t1 - t0) * n), 4)
print(json.dumps(r))' "$line" "$b0" "$b1" "$t0" "$t1" "$HZ" "$NCPU" >>"$RAW"
}

# ---- sgemm peak (again at the end: the best of both is the peak) ----------
log "sgemm peak, $THREADS threads"
run_json "$BIN" --sgemm-peak --json

# ---- the steps --------------------------------------------------------------
for shape in $SHAPES; do
  if [ "$shape" = qwen2.5-0.5b ]; then
    steps=2; warm=1; rep=${REPEAT:-1}
    [ "$QUICK" = 1 ] && steps=1
  else
    steps=3; warm=1; rep=${REPEAT:-2}
    [ "$QUICK" = 1 ] && steps=2
  fi
  for ((i = 1; i <= rep; i++)); do
    log "$shape: C ($steps steps after $warm warm-up, run $i/$rep)"
    run_json "$BIN" --shape "$shape" --steps $steps --warmup $warm --json
    if [ "$TORCH" = 1 ]; then
      log "$shape: PyTorch ($steps steps after $warm warm-up, run $i/$rep)"
      run_json "$PY" scripts/bench_torch.py --shape "$shape" --steps $steps --warmup $warm \
        --threads "$THREADS" --json
    fi
  done
done

log "sgemm peak again"
run_json "$BIN" --sgemm-peak --json

# ---- table ----------------------------------------------------------------------
ENV_NOTE="threads $THREADS (OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS OMP_NUM_THREADS=$OMP_NUM_THREADS"
for v in OMP_WAIT_POLICY GOMP_SPINCOUNT OPENBLAS_CORETYPE OPENBLAS_L2_SIZE; do
  [ -n "${!v:-}" ] && ENV_NOTE="$ENV_NOTE $v=${!v}"
done
ENV_NOTE="$ENV_NOTE)"
"$PY" - "$RAW" "$ENV_NOTE" "$(uname -n) / $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //') / $(nproc) CPUs" >"$MD" <<'EOF'
import json, sys
raw, env_note, machine = sys.argv[1], sys.argv[2], sys.argv[3]
rows = [json.loads(l) for l in open(raw) if l.strip()]
for r in rows:
    r.setdefault("impl", "sgemm")
peak = max((r["sgemm_peak_gflops"] for r in rows if r["impl"] == "sgemm"), default=0.0)
core = next((r.get("openblas_core", "?") for r in rows if r["impl"] == "sgemm"), "?")
shapes = []
for r in rows:
    if r["impl"] != "sgemm" and r["shape"] not in shapes:
        shapes.append(r["shape"])

def best(impl, shape):
    rs = [r for r in rows if r["impl"] == impl and r["shape"] == shape]
    if not rs:
        return None
    b = dict(max(rs, key=lambda r: r["tok_s"]))
    b["peak_rss_mb"] = max(r["peak_rss_mb"] for r in rs)
    b["runs"] = len(rs)
    return b

f = lambda x, p=1: "–" if x is None else f"{x:,.{p}f}"
print(f"Training step: LoRA rank 16 (alpha 32) on q,k,v,o,gate,up,down; batch 4 x 256; "
      f"forward + backward + SGD; random weights; {env_note}.")
print(f"sgemm peak: {peak:.1f} GFLOP/s (OpenBLAS {core}, best of square 1024/2048/4096 "
      f"before and after the runs). Machine: {machine}.")
print()
print("| shape | C tok/s | PyTorch tok/s | speed ratio | C GFLOP/s | C % of sgemm peak "
      "| C peak MB | PyTorch peak MB | memory ratio |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
detail = []
load = lambda r: "–" if not r or "other_cpu_frac" not in r else "%.0f %%" % (100 * r["other_cpu_frac"])
for s in shapes:
    c, t = best("c", s), best("torch", s)
    sr = c["tok_s"] / t["tok_s"] if c and t else None
    mr = c["peak_rss_mb"] / t["peak_rss_mb"] if c and t else None
    srs = "–" if sr is None else "%.2fx" % sr
    mrs = "–" if mr is None else "%.2fx" % mr
    pct = "–" if not (c and peak) else "%.1f %%" % (100 * c["gflops"] / peak)
    print(f"| {s} | {f(c and c['tok_s'])} | {f(t and t['tok_s'])} | {srs} | "
          f"{f(c and c['gflops'])} | {pct} | {f(c and c['peak_rss_mb'], 0)} | "
          f"{f(t and t['peak_rss_mb'], 0)} | {mrs} |")
    detail.append((s, c, t, sr, mr))
print()
print("Targets: C >= 5x PyTorch tok/s at stories260k and stories15m, >= 2x at qwen2.5-0.5b; "
      "C peak memory <= 0.4x PyTorch's.")
print()
print("| shape | target speed | met | target memory | met | C s/step (fwd + bwd) "
      "| PyTorch s/step (fwd + bwd) | C GFLOP/step | runs (C, PyTorch) | other load (C, PyTorch) |")
print("| --- | ---: | :---: | ---: | :---: | ---: | ---: | ---: | ---: | ---: |")
for s, c, t, sr, mr in detail:
    tgt = 2.0 if "0.5b" in s.lower() else 5.0
    ok = lambda x, lim, ge: "–" if x is None else ("yes" if (x >= lim if ge else x <= lim) else "no")
    cs = f"{c['s_per_step']:.3f} ({c['fwd_s']:.3f} + {c['bwd_s']:.3f})" if c else "–"
    ts = f"{t['s_per_step']:.3f} ({t['fwd_s']:.3f} + {t['bwd_s']:.3f})" if t else "–"
    print(f"| {s} | {tgt:.0f}x | {ok(sr, tgt, True)} | 0.4x | {ok(mr, 0.4, False)} | {cs} | {ts} "
          f"| {f(c and c['flops_per_step'] / 1e9)} | {c['runs'] if c else 0}, {t['runs'] if t else 0} "
          f"| {load(c)}, {load(t)} |")
print()
print("C's fwd includes the classifier's backward (done chunk by chunk in the forward call, "
      "so the logits are never held); PyTorch's does not: compare whole steps.")
busy = [r for r in rows if r.get("other_cpu_frac", 0) > 0.1]
if busy:
    print()
    print(f"Warning: other processes used more than 10 % of the machine during {len(busy)} of "
          f"{len(rows)} runs (\"other load\"): these timings are not reliable.")
EOF
cat "$MD"
cp "$MD" "$OUT/latest.md"
log "written $MD (raw: $RAW)"
