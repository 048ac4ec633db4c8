#!/usr/bin/env python3
"""What is a calibration trained against the base the device runs worth?

    quant_study.py NAME [--types q8_0,q4_0] [--variants V1,V2,...]
                   [--methods LC,LC++] [--references multi-step,linear] [--jobs 2] [--bin build/bin]

A phone runs the base quantized (GGUF Q8_0 / Q4_0), not in float32. For
each base type T of --types this runs the benchmark's `calibrate` config
configs/benchmark/NAME/calibrate.json on the --variants (default the
paper's four task types, one variant each) with "base_type": T, so the
calibrations (--methods) are trained, and every method evaluated, against
the base held as T, exactly as llama.cpp quantizes it (kernels/quant.h);
and once in float32 (T = f32), the benchmark's own setting. Then it
scores each float32-trained calibration on each quantized base
(`evaluate` with the job's merge recipe and calibration.h5 and the same
base_type): the calibration a user would ship if it were trained on the
float32 base. The single-task LoRAs are the benchmark's (trained once, in
float32), as on a device that receives LoRAs and a base separately.

Needs the benchmark's base (scripts/benchmark.sh NAME --stage base) and
the single-task LoRAs of the variants (trained here with `train --resume`
from configs/benchmark/NAME/lora-*.json when their final/ is missing).
Runs go to runs/benchmark-NAME/quant/; finished jobs are kept. Before the
quantized runs are scored, the float32 calibrations rebuilt by `evaluate`
on the float32 base must give calibrate's own predictions byte for byte
(else it stops: the comparison would measure the tool, not the base).

Writes results/benchmark-NAME/quantized-base.md: per base type and method
the mean quality and success rate over the four task types (as Table 1
averages them) and per type, and the differences (trained on T minus
trained on float32, both run on T; and T-trained on T minus float32 on
float32) with 95 % paired-bootstrap intervals over the test examples.
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
from bench_tables import TYPES, aux_rate, job_dir, task_quality  # noqa: E402
from seed_study import absolutize  # noqa: E402

TYPE_NAMES = ("summary + translation", "summary + tone", "reply + translation", "reply + tone")
PAPER_FOUR = "summary+es,summary+casual,reply+es,reply+casual"


def run(cmd, log, env):
    with open(log, "w") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=f, env=env)


def wait_all(procs, what):
    for name, log, p in procs:
        if p.wait() != 0:
            sys.exit("quant_study: %s failed for %s: see %s" % (what, name, log))


def parallel(items, start, jobs, what):
    """Runs start(item) -> (name, log, Popen) for every item, jobs at a time."""
    todo, procs = list(items), []
    while todo or procs:
        while todo and len(procs) < jobs:
            procs.append(start(todo.pop(0)))
        wait_all([procs.pop(0)], what)


def scored(pred, main_t, aux):
    """(per-example qualities, per-example success hits) of a predictions file."""
    with open(pred, encoding="utf-8") as f:
        ex = [json.loads(line) for line in f if line.strip()]
    return [task_quality(main_t, e) for e in ex], aux_rate(pred, aux)["hits"], [e.get("line") for e in ex]


def type_of(task):
    main_t, aux = task.split("+", 1)
    kind = "lang" if aux in ("es", "ca", "fr") else "tone"
    return main_t, kind


def means(res, tasks):
    """(mean quality, mean rate, [(quality, rate) per type]) as Table 1
    averages: over the types, each over its variants, each over examples."""
    per = []
    for m, k, _ in TYPES:
        sel = [t for t in tasks if type_of(t) == (m, k)]
        if not sel:
            per.append(None)
            continue
        per.append((statistics.mean(statistics.mean(res[t][0]) for t in sel),
                    statistics.mean(statistics.mean(res[t][1]) for t in sel)))
    got = [p for p in per if p]
    return statistics.mean(p[0] for p in got), statistics.mean(p[1] for p in got), per


def paired(a, b, tasks, n_boot, seed):
    """a - b in mean quality and rate (averaged as means()), each with a 95 %
    paired-bootstrap interval: examples resampled within each variant, the
    same for both."""
    import numpy as np
    rng = np.random.default_rng(seed)
    out = []
    for which in (0, 1):
        by_type = {}
        for t in tasks:
            d = np.asarray(a[t][which], float) - np.asarray(b[t][which], float)
            idx = rng.integers(0, len(d), size=(n_boot, len(d)))
            by_type.setdefault(type_of(t), []).append((d.mean(), d[idx].mean(axis=1)))
        point = np.mean([np.mean([p for p, _ in v]) for v in by_type.values()])
        boots = np.mean([np.mean([bb for _, bb in v], axis=0) for v in by_type.values()], axis=0)
        lo, hi = np.percentile(boots, [2.5, 97.5])
        out.append((point, lo, hi))
    return out


def eval_config(cfg, task, results, jdir, bt, out):
    """The `evaluate` config that scores calibrate job jdir (its results.json
    `results`, of task `task` in calibrate config cfg) on the base held as
    bt: the job's merge recipe, its calibration.h5, the task's test data
    and the run's generation and metric settings."""
    d = task["data"]
    ev = {"model": cfg["model"], "tokenizer": cfg["tokenizer"], "output_dir": out, "label": results["method"],
          "merge": results["merge"], "calibs": [os.path.join(jdir, "calibration.h5")],
          "data": {"path": d["test"], "prompt_template": d["prompt_template"],
                   "target_template": d["target_template"]},
          "generation": cfg.get("generation", {}), "metrics": cfg.get("metrics", {})}
    if bt != "f32":
        ev["base_type"] = bt
    for k_task, k_eval in (("max_len", "max_len"), ("max_test_examples", "max_examples"),
                           ("on_bad_row", "on_bad_row"), ("add_bos", "add_bos"),
                           ("prompt_format", "prompt_format"), ("system", "system")):
        if k_task in d:
            ev["data"][k_eval] = d[k_task]
    return ev


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("name")
    ap.add_argument("--types", default="q8_0,q4_0")
    ap.add_argument("--variants", default=PAPER_FOUR)
    ap.add_argument("--methods", default="LC,LC++", help="trained methods (calibrations)")
    ap.add_argument("--references", default="multi-step,linear", help="untrained methods, run on every base")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--bootstrap", type=int, default=2000)
    a = ap.parse_args()
    cdir = os.path.join(ROOT, "configs", "benchmark", a.name)
    cfg_path = os.path.join(cdir, "calibrate.json")
    if not os.path.exists(cfg_path):
        sys.exit("quant_study: no %s" % cfg_path)
    with open(cfg_path) as f:
        cfg = absolutize(json.load(f), cdir)
    types = [t.strip() for t in a.types.split(",") if t.strip()]
    bad = [t for t in types if t not in ("f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k")]
    if bad:
        sys.exit("quant_study: --types %s: not a quantized base type (f16, bf16, q8_0, q4_0, q4_k, q6_k)" % ",".join(bad))
    variants = [v.strip() for v in a.variants.split(",") if v.strip()]
    tasks = {t["name"]: t for t in cfg["tasks"]}
    unknown = [v for v in variants if v not in tasks]
    if unknown:
        sys.exit("quant_study: variants %s are not tasks of %s" % (", ".join(unknown), cfg_path))
    trained = [m.strip() for m in a.methods.split(",") if m.strip()]
    refs = [m.strip() for m in a.references.split(",") if m.strip()]
    meth = {m["name"]: m for m in cfg["methods"]}
    for m in trained + refs:
        if m not in meth:
            sys.exit("quant_study: method %r is not in %s" % (m, cfg_path))
    for m in trained:
        if meth[m]["type"] != "calibrate" or meth[m].get("shared"):
            sys.exit("quant_study: --methods %r: only per-task calibrations (type calibrate, not shared)" % m)
    runs = os.path.join(ROOT, "runs", "benchmark-" + a.name)
    qdir = os.path.join(runs, "quant")
    os.makedirs(qdir, exist_ok=True)
    if not os.path.exists(cfg["model"]):
        sys.exit("quant_study: no base at %s: run scripts/benchmark.sh %s --stage base first" % (cfg["model"], a.name))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")

    # the single-task LoRAs the variants merge
    adapters = {ad["name"]: ad["path"] for ad in cfg["adapters"]}
    need = sorted({n for v in variants for n in tasks[v]["adapters"]})
    missing = [n for n in need if not os.path.isdir(os.path.join(os.path.dirname(adapters[n]), "final"))]

    def train_lora(n):
        lc = os.path.join(cdir, "lora-%s.json" % n)
        if not os.path.exists(lc):
            sys.exit("quant_study: adapter %s is missing and %s does not exist" % (n, lc))
        log = os.path.join(qdir, "train-%s.log" % n)
        print("quant_study: train LoRA %s (log %s)" % (n, log), file=sys.stderr)
        return n, log, run([os.path.join(a.bin, "train"), "--config", lc, "--resume"], log, env)
    parallel(missing, train_lora, a.jobs, "train")

    # calibrate on every base type (f32 first: the float32 calibrations)
    only = ",".join(refs + trained)

    def calibrate(bt):
        c = json.loads(json.dumps(cfg))
        if bt != "f32":
            c["base_type"] = bt
        c["output_dir"] = os.path.join(qdir, bt, "calibrate")
        os.makedirs(os.path.join(qdir, bt), exist_ok=True)
        path = os.path.join(qdir, bt, "calibrate.json")
        with open(path, "w") as f:
            json.dump(c, f, indent=1)
        log = os.path.join(qdir, bt, "calibrate.log")
        print("quant_study: calibrate on the %s base: %s (log %s)" % (bt, only, log), file=sys.stderr)
        return bt, log, run([os.path.join(a.bin, "calibrate"), "--config", path, "--resume", "--no-summary",
                             "--tasks", ",".join(variants), "--only", only], log, env)
    parallel(["f32"] + types, calibrate, a.jobs, "calibrate")

    # the float32 calibrations run by evaluate: on the f32 base (a check of
    # the rebuild) and on each quantized one
    f32cal = os.path.join(qdir, "f32", "calibrate")

    def eval_item(item):
        bt, v, m = item
        jd = job_dir(f32cal, v, m)
        with open(os.path.join(jd, "results.json")) as f:
            r = json.load(f)
        out = os.path.join(qdir, "f32-on-" + bt, v, os.path.basename(jd))
        os.makedirs(out, exist_ok=True)
        ev = eval_config(cfg, tasks[v], r, jd, bt, out)
        path = os.path.join(out, "evaluate.json")
        with open(path, "w") as f:
            json.dump(ev, f, indent=1)
        if os.path.exists(os.path.join(out, "results.json")):
            return "%s/%s on %s" % (v, m, bt), "/dev/null", subprocess.Popen(["true"])
        return "%s/%s on %s" % (v, m, bt), os.path.join(out, "evaluate.log"), \
            run([os.path.join(a.bin, "evaluate"), "--config", path], os.path.join(out, "evaluate.log"), env)
    items = [(bt, v, m) for bt in ["f32"] + types for v in variants for m in trained]
    print("quant_study: %d evaluations of the float32 calibrations" % len(items), file=sys.stderr)
    parallel(items, eval_item, a.jobs, "evaluate")
    for v in variants:
        for m in trained:
            p1 = os.path.join(job_dir(f32cal, v, m), "predictions.jsonl")
            p2 = os.path.join(qdir, "f32-on-f32", v, os.path.basename(job_dir(f32cal, v, m)), "predictions.jsonl")
            if open(p1, "rb").read() != open(p2, "rb").read():
                sys.exit("quant_study: %s / %s rebuilt by evaluate predicts other text than calibrate (%s, %s): "
                         "the comparison would not be fair" % (v, m, p1, p2))

    # score
    def load(caldir, m, evdir=None):
        res = {}
        for v in variants:
            jd = job_dir(caldir, v, m)
            pred = os.path.join(evdir, v, os.path.basename(jd), "predictions.jsonl") if evdir else \
                os.path.join(jd, "predictions.jsonl")
            main_t, aux = v.split("+", 1)
            res[v] = scored(pred, main_t, aux)
        return res
    cond = {}  # (evaluated on, method, trained on or None) -> results
    for bt in ["f32"] + types:
        cd = os.path.join(qdir, bt, "calibrate")
        for m in refs:
            cond[(bt, m, None)] = load(cd, m)
        for m in trained:
            cond[(bt, m, bt)] = load(cd, m)
            if bt != "f32":
                cond[(bt, m, "f32")] = load(f32cal, m, os.path.join(qdir, "f32-on-" + bt))
    for k, r in cond.items():
        lines = {v: r[v][2] for v in variants}
        ref = {v: cond[("f32", trained[0] if trained else refs[0], "f32" if trained else None)][v][2]
               for v in variants}
        if lines != ref:
            sys.exit("quant_study: %s was evaluated on other test examples" % (k,))

    out = ["# Calibration against the base the device runs (%s)" % a.name, "",
           "`python3 scripts/quant_study.py %s --types %s --variants %s --methods %s --references %s`." %
           (a.name, a.types, ",".join(variants), ",".join(trained), ",".join(refs)), "",
           "The base held as each type (quantized at load exactly as llama.cpp quantizes it, norms and "
           "biases in float32), the benchmark's single-task LoRAs (trained once, in float32) and its "
           "`calibrate` settings. *Trained on f32*: the calibration trained on the float32 base (the "
           "benchmark's setting) and run on the base of the row, rebuilt by `evaluate` from the job's "
           "recipe and calibration.h5 (on the float32 base it reproduces calibrate's predictions byte "
           "for byte, checked by the script). *Trained on the row's base*: `calibrate` with "
           "`\"base_type\"` set, trained and evaluated against that base. Quality is ROUGE-L for summaries "
           "and weighted ROUGE for replies; rate is the language / tone success rate; the mean averages "
           "the task types as Table 1 does. %d test examples per variant." %
           len(cond[("f32", (trained or refs)[0], "f32" if trained else None)][variants[0]][0]), ""]
    head = "| base run | method | trained on | mean quality | mean rate | " + \
        " | ".join("%s | rate" % n for n in TYPE_NAMES) + " |"
    out += [head, "| --- | --- | --- | ---: | ---: |" + " ---: | ---: |" * len(TYPE_NAMES)]
    for bt in ["f32"] + types:
        for m in refs + trained:
            for tb in ([None] if m in refs else (["f32"] if bt == "f32" else ["f32", bt])):
                q, r, per = means(cond[(bt, m, tb)], variants)
                out.append("| %s | %s | %s | %.4f | %.3f | %s |" % (
                    bt, m, tb or "–", q, r,
                    " | ".join("%.4f | %.3f" % p if p else "– | –" for p in per)))
    out += ["", "## Differences", "",
            "Mean quality and success rate, with a 95 %% paired-bootstrap interval (%d resamples of the "
            "test examples within each variant); \\* marks an interval that excludes 0. The interval "
            "covers the test examples only, not retraining." % a.bootstrap, "",
            "| method | comparison | Δ quality | 95 % interval | Δ rate | 95 % interval |",
            "| --- | --- | ---: | :---: | ---: | :---: |"]
    for bt in types:
        for m in trained:
            for label, x, y in (
                    ("trained on %s − trained on f32, both run on %s" % (bt, bt), (bt, m, bt), (bt, m, "f32")),
                    ("trained on %s, run on %s − f32 on f32" % (bt, bt), (bt, m, bt), ("f32", m, "f32"))):
                d = paired(cond[x], cond[y], variants, a.bootstrap, 1)
                out.append("| %s | %s | %s |" % (m, label, " | ".join(
                    "%+.4f%s | [%+.4f, %+.4f]" % (p, "\\*" if lo > 0 or hi < 0 else "", lo, hi) for p, lo, hi in d)))
        for m in refs:
            d = paired(cond[(bt, m, None)], cond[("f32", m, None)], variants, a.bootstrap, 1)
            out.append("| %s | run on %s − run on f32 | %s |" % (m, bt, " | ".join(
                "%+.4f%s | [%+.4f, %+.4f]" % (p, "\\*" if lo > 0 or hi < 0 else "", lo, hi) for p, lo, hi in d)))
    text = "\n".join(out) + "\n"
    dest = os.path.join(ROOT, "results", "benchmark-" + a.name, "quantized-base.md")
    with open(dest, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
