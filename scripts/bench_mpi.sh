#!/usr/bin/env bash
# Data parallelism over MPI ranks against threads in one process (a
# benchmark, not a test; numbers go to README.md, "Scale-out with MPI"): random weights at
# the stories15M shape (lcmt_bench make15m), synthetic question/answer
# rows made here. Times `train` (a rank-8 LoRA) and `calibrate` (one LC++
# job: training, then greedy evaluation of the test set) with 1 process x
# T threads against N ranks x 1 thread (mpirun on loopback), runs
# alternating, median of R, and checks that both wrote the same adapter /
# calibration tensors. Needs an MPI build (-DLC_MPI=ON, the default when
# OpenMPI is installed) and mpirun.
#   scripts/bench_mpi.sh [--build DIR] [--work DIR] [--runs R] [--steps S] [--ranks N]
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
build="$src/build" work=/tmp/lcmt-bench-mpi runs=3 steps=16 ranks=2
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build="$2"; shift ;;
    --work) work="$2"; shift ;;
    --runs) runs="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    --ranks) ranks="$2"; shift ;;
    *) echo "bench_mpi.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
command -v mpirun >/dev/null || { echo "bench_mpi.sh: mpirun not found (apt-get install openmpi-bin)" >&2; exit 2; }
cmake --build "$build" -j2 --target train calibrate lcmt_bench >/dev/null
bin="$build/bin"
[ $((8 % ranks)) = 0 ] || { echo "bench_mpi.sh: --ranks must divide the batch of 8" >&2; exit 2; }
mkdir -p "$work"
cd "$work"
[ -f m15/model.safetensors ] || "$bin/lcmt_bench" make15m m15 >/dev/null 2>&1
/usr/bin/python3 - <<'PY'
import json, random
words = ("the a cat dog went to park and saw big small red blue tree house friend said hello "
         "then they played ran jumped happy sad day night sun moon").split()
r = random.Random(3)
for name, n in (("train", 256), ("val", 32), ("test", 16)):
    with open(name + ".jsonl", "w") as f:
        for _ in range(n):
            q = " ".join(r.choice(words) for _ in range(r.randint(4, 8)))
            f.write(json.dumps({"q": q, "a": " ".join(reversed(q.split()))}) + "\n")
PY
data='"data": {"train": "train.jsonl", "validation": "val.jsonl", "prompt_template": "Q: {q}\nA:", "target_template": " {a}", "max_len": 128}'
trn="\"training\": {\"steps\": $steps, \"batch_size\": 8, \"micro_batch_size\": $((8 / ranks)), \"seed\": 1, \"eval_every\": $steps, \"eval_batches\": 2, \"log_every\": 4, \"checkpoint_every\": $steps}"
for l in a b; do  # two single-task LoRAs for calibrate (2 steps each: the timing does not need good ones)
  [ -d "lora-$l/final" ] || { cat > "lora-$l.json" <<JSON
{"model": "m15", "tokenizer": "m15/tok32000.bin", "output_dir": "lora-$l", "mode": "lora",
 "lora": {"rank": 8, "alpha": 16}, $data,
 "training": {"steps": 2, "batch_size": 4, "seed": $([ $l = a ] && echo 1 || echo 2)}, "optimizer": {"lr": 0.001}}
JSON
  OMP_NUM_THREADS=2 "$bin/train" --config "lora-$l.json" >/dev/null 2>&1; }
done
job_train() { cat > "$1.json" <<JSON
{"model": "m15", "tokenizer": "m15/tok32000.bin", "output_dir": "$1", "mode": "lora",
 "lora": {"rank": 8, "alpha": 16}, $data, $trn, "optimizer": {"lr": 0.001}}
JSON
}
job_cal() { cat > "$1.json" <<JSON
{"model": "m15", "tokenizer": "m15/tok32000.bin", "output_dir": "$1",
 "adapters": [{"name": "a", "path": "lora-a/final"}, {"name": "b", "path": "lora-b/final"}],
 "tasks": [{"name": "t", "adapters": ["a", "b"], "data": {"train": "train.jsonl", "validation": "val.jsonl",
   "test": "test.jsonl", "prompt_template": "Q: {q}\nA:", "target_template": " {a}", "max_len": 128}}],
 "methods": [{"name": "LC++", "type": "calibrate", "calibration": {"kind": "lowrank", "rank": 4}}],
 $trn, "optimizer": {"lr": 0.001}, "generation": {"max_new_tokens": 16, "batch_size": 8}}
JSON
}
mpi="mpirun --allow-run-as-root --oversubscribe --bind-to none -np $ranks --mca btl self,tcp --mca btl_tcp_if_include lo --mca oob_tcp_if_include lo"
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
timeit() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1 || { echo "bench_mpi.sh: failed: $*" >&2; exit 1; }; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
echo "| program | $ranks ranks x 1 thread (s) | 1 process x $ranks threads (s) | ratio |"
echo "| --- | ---: | ---: | ---: |"
for prog in train calibrate; do
  : > "t-$prog-mpi"; : > "t-$prog-one"
  for r in $(seq "$runs"); do
    rm -rf "$prog-mpi" "$prog-one"
    if [ $prog = train ]; then job_train "$prog-mpi"; job_train "$prog-one"; else job_cal "$prog-mpi"; job_cal "$prog-one"; fi
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 timeit $mpi "$bin/$prog" --config "$prog-mpi.json" >> "t-$prog-mpi"
    OMP_NUM_THREADS=$ranks OPENBLAS_NUM_THREADS=1 timeit "$bin/$prog" --config "$prog-one.json" >> "t-$prog-one"
  done
  a=$(median < "t-$prog-mpi"); b=$(median < "t-$prog-one")
  printf "| %s (%s steps%s) | %.2f | %.2f | %.2f |\n" "$prog" "$steps" "$([ $prog = calibrate ] && echo ', then 16 test answers')" "$a" "$b" "$(echo "$a / $b" | bc -l)"
done
# same trained tensors (both are bit-exact with a 1-thread process only when the
# kernels' sums do not depend on the thread count; compared as a sanity check)
cmp -s train-mpi/final/adapter_model.safetensors train-one/final/adapter_model.safetensors &&
  echo "train: the adapters of the two runs are byte-identical" ||
  echo "train: the adapters differ between 1 x $ranks threads and $ranks x 1 (thread-count dependent sums)"
