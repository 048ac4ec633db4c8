#!/usr/bin/env python3
"""How much do the calibration results move with the training seed?

    seed_study.py NAME [--seeds 2,3] [--methods LC,LC++] [--jobs 2] [--bin build/bin]

Reruns `calibrate` for the given methods on every variant of the benchmark
configs/benchmark/NAME/ once per extra seed (training.seed, which orders
the batches, and each method's calibration.init_seed, which draws LC++'s
P1), with the base, the single-task LoRAs and the data unchanged, into
runs/benchmark-NAME/seeds/seed<K>/. The benchmark's own run
(runs/benchmark-NAME/calibrate, seed 1 / init_seed 0) is the first seed.
Needs the benchmark's LoRAs (scripts/benchmark.sh NAME first). Finished
jobs are kept (calibrate --resume); seeds run as parallel processes (--jobs),
one thread each.

Writes results/benchmark-NAME/seeds.md: per method and seed the mean
quality and success rate over the four task types (as Table 1 and the plot
average them) and per task type, then the mean and standard deviation over
the seeds. Only the calibrations are retrained: the spread says nothing
about retraining the LoRAs.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from bench_tables import collect, type_means  # noqa: E402

TYPE_NAMES = ("summary + translation", "summary + tone", "reply + translation", "reply + tone")


def absolutize(cfg, cfg_dir):
    """The calibrate config with every path made absolute (it is written
    elsewhere)."""
    def ab(p):
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(cfg_dir, p))
    for k in ("model", "tokenizer", "output_dir"):
        if k in cfg:
            cfg[k] = ab(cfg[k])
    for a in cfg.get("adapters", []):
        a["path"] = ab(a["path"])
    for t in cfg.get("tasks", []):
        for k in ("train", "validation", "test"):
            if k in t.get("data", {}):
                t["data"][k] = ab(t["data"][k])
        if "joint_expert" in t:
            t["joint_expert"] = ab(t["joint_expert"])
    return cfg


def derive(cfg, seed, methods, out_dir):
    """cfg for one seed: training.seed and the methods' init_seed set, the
    output moved; methods limited to `methods`."""
    c = json.loads(json.dumps(cfg))
    c.setdefault("training", {})["seed"] = seed
    c["methods"] = [m for m in c["methods"] if m["name"] in methods]
    for m in c["methods"]:
        if "calibration" in m:
            m["calibration"]["init_seed"] = seed
    c["output_dir"] = out_dir
    return c


def summarize(rows, method):
    """(overall quality, overall rate, [(quality, rate) per task type]) of
    method, or None unless it has jobs of every type."""
    per = type_means(rows, method)
    if not all(per):
        return None
    return statistics.mean(q for q, _ in per), statistics.mean(r for _, r in per), per


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--seeds", default="2,3")
    ap.add_argument("--methods", default="LC,LC++")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    a = ap.parse_args()
    cfg_path = os.path.join(ROOT, "configs", "benchmark", a.name, "calibrate.json")
    if not os.path.exists(cfg_path):
        sys.exit("seed_study: no %s" % cfg_path)
    with open(cfg_path) as f:
        cfg = absolutize(json.load(f), os.path.dirname(cfg_path))
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in [x["name"] for x in cfg["methods"]]]
    if unknown:
        sys.exit("seed_study: methods %s are not in %s" % (", ".join(unknown), cfg_path))
    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    runs = os.path.join(ROOT, "runs", "benchmark-" + a.name)
    base_cal = os.path.join(runs, "calibrate")
    if not os.path.isdir(base_cal):
        sys.exit("seed_study: %s missing: run scripts/benchmark.sh %s first" % (base_cal, a.name))
    # one calibrate process per seed, --jobs at a time
    procs, todo, cfgs = [], list(seeds), {}
    for s in seeds:
        d = os.path.join(runs, "seeds", "seed%d" % s)
        os.makedirs(d, exist_ok=True)
        cfgs[s] = os.path.join(d, "calibrate.json")
        with open(cfgs[s], "w") as f:
            json.dump(derive(cfg, s, methods, os.path.join(d, "calibrate")), f, indent=1)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    while todo or procs:
        while todo and len(procs) < a.jobs:
            s = todo.pop(0)
            log = open(os.path.join(runs, "seeds", "seed%d" % s, "calibrate.log"), "w")
            print("seed_study: seed %d: calibrate %s (log %s)" % (s, ",".join(methods), log.name), file=sys.stderr)
            procs.append((s, log, subprocess.Popen([os.path.join(a.bin, "calibrate"), "--config", cfgs[s], "--resume",
                                                    "--only", ",".join(methods)], stdout=log, stderr=log, env=env)))
        s, log, p = procs.pop(0)
        if p.wait() != 0:
            sys.exit("seed_study: calibrate failed for seed %d: see %s" % (s, log.name))
        log.close()
    # tables
    results = {1: collect(base_cal)[0]}
    for s in seeds:
        results[s] = collect(os.path.join(runs, "seeds", "seed%d" % s, "calibrate"))[0]
    out = ["# Calibration seeds (%s)" % a.name, "",
           "`scripts/seed_study.py %s --seeds %s --methods %s`: the calibrations retrained with other seeds "
           "(training.seed orders the batches, calibration.init_seed draws LC++'s P1); the base, the "
           "single-task LoRAs and the data are the benchmark's. Seed 1 is the benchmark's own run "
           "(init_seed 0). Quality is ROUGE-L for summaries and weighted ROUGE for replies; rate is the "
           "language / tone success rate; \"mean\" averages the four task types as Table 1 and the plot do." %
           (a.name, a.seeds, a.methods), ""]
    head = "| method | seed | mean quality | mean rate | " + " | ".join("%s | rate" % n for n in TYPE_NAMES) + " |"
    out += [head, "| --- | --- | ---: | ---: |" + " ---: | ---: |" * len(TYPE_NAMES)]
    for m in methods:
        got = []
        for s in [1] + seeds:
            r = summarize(results[s], m)
            if r is None:
                continue
            got.append(r)
            out.append("| %s | %d | %.4f | %.3f | %s |" % (m, s, r[0], r[1],
                                                         " | ".join("%.4f | %.3f" % x for x in r[2])))
        if len(got) > 1:
            sd = statistics.stdev
            out.append("| %s | mean ± sd | %.4f ± %.4f | %.3f ± %.3f | %s |" % (
                m, statistics.mean(g[0] for g in got), sd([g[0] for g in got]),
                statistics.mean(g[1] for g in got), sd([g[1] for g in got]),
                " | ".join("%.4f ± %.4f | %.3f ± %.3f" % (
                    statistics.mean(g[2][i][0] for g in got), sd([g[2][i][0] for g in got]),
                    statistics.mean(g[2][i][1] for g in got), sd([g[2][i][1] for g in got]))
                    for i in range(len(TYPE_NAMES)))))
    text = "\n".join(out) + "\n"
    dest = os.path.join(ROOT, "results", "benchmark-" + a.name, "seeds.md")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    with open(dest, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
