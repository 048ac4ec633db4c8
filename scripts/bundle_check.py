#!/usr/bin/env python3
"""Scores the exported bundle as shipped and compares it with what
`calibrate` measured before export.

    bundle_check.py CALIBRATE_JSON EXPORT_JSON WORKDIR OUT_MD [--bin DIR] [--bundle FILE]

For every task in EXPORT_JSON it writes an `evaluate` config (WORKDIR/<task>.json:
the task's test data, templates, generation and metric settings from
CALIBRATE_JSON, and "bundle": {the bundle, the task}), runs `evaluate` on
it, and writes a Markdown table to OUT_MD: per task, the method, the
quality (weighted ROUGE for reply tasks, ROUGE-L otherwise, as in
bench_tables.py) and the language / tone success rate (for the benchmark's
"<main>+<language or tone>" task names) from `calibrate`'s
job (float32 tensors) and from the bundle (its f16 / int8 tensors), and how
many predictions are identical. --bundle evaluates another bundle made from
the same export config (e.g. with other dtypes).
"""
import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_tables import aux_rate, job_dir, task_quality  # noqa: E402


def load(path):
    with open(path) as f:
        return json.load(f)


def resolve(base_file, p):
    return p if os.path.isabs(p) else os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(base_file)), p))


def rate(pred, aux):
    r = aux_rate(pred, aux)
    return None if r is None else r["rate"]


def predictions(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["prediction"] for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("calibrate_json")
    ap.add_argument("export_json")
    ap.add_argument("workdir")
    ap.add_argument("out_md")
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(HERE), "build", "bin"))
    ap.add_argument("--bundle", help="the bundle to score (default: export.json's output)")
    a = ap.parse_args()
    cal, exp = load(a.calibrate_json), load(a.export_json)
    bundle = os.path.abspath(a.bundle) if a.bundle else resolve(a.export_json, exp["output"])
    if not os.path.exists(bundle):
        sys.exit("bundle_check: %s does not exist (run export first)" % bundle)
    caldir = resolve(a.export_json, exp["calibrate_dir"])
    tasks = {t["name"]: t for t in cal["tasks"]}
    os.makedirs(a.workdir, exist_ok=True)
    rows = []
    for item in exp["tasks"]:
        name, method = item["task"], item["method"]
        if name not in tasks:
            sys.exit("bundle_check: task %s of %s is not in %s" % (name, a.export_json, a.calibrate_json))
        d = tasks[name]["data"]
        ev = {"label": "%s / %s (bundle)" % (name, method),
              "model": resolve(a.calibrate_json, cal["model"]),
              "output_dir": os.path.abspath(os.path.join(a.workdir, name)),
              "bundle": {"path": bundle, "task": name},
              "data": {"path": resolve(a.calibrate_json, d["test"]), "prompt_template": d["prompt_template"],
                       "target_template": d["target_template"]}}
        if "tokenizer" in cal:
            ev["tokenizer"] = resolve(a.calibrate_json, cal["tokenizer"])
        for k_cal, k_ev in (("max_len", "max_len"), ("max_test_examples", "max_examples"),
                            ("on_bad_row", "on_bad_row"), ("add_bos", "add_bos"),
                            ("prompt_format", "prompt_format"), ("system", "system")):
            if k_cal in d:
                ev["data"][k_ev] = d[k_cal]
        for k in ("generation", "metrics"):
            if k in cal:
                ev[k] = cal[k]
        cfg = os.path.join(a.workdir, name + ".json")
        with open(cfg, "w") as f:
            json.dump(ev, f, indent=1)
        p = subprocess.run([os.path.join(a.bin, "evaluate"), "--config", cfg], capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit("bundle_check: evaluate failed on %s:\n%s" % (cfg, p.stderr[-2000:]))
        job = job_dir(caldir, name, method)
        ref, got = load(os.path.join(job, "results.json")), load(os.path.join(ev["output_dir"], "results.json"))
        main_t, _, aux = name.partition("+")
        p_ref = predictions(os.path.join(job, "predictions.jsonl"))
        p_got = predictions(os.path.join(ev["output_dir"], "predictions.jsonl"))
        same = sum(1 for x, y in zip(p_ref, p_got) if x == y)
        r0 = rate(os.path.join(job, "predictions.jsonl"), aux)
        r1 = rate(os.path.join(ev["output_dir"], "predictions.jsonl"), aux)
        rows.append((name, method, task_quality(main_t, ref), task_quality(main_t, got), r0, r1, same, len(p_ref)))
        print("bundle_check: %s / %s: quality %.4f -> %.4f, identical %d/%d" % (
            name, method, rows[-1][2], rows[-1][3], same, len(p_ref)), file=sys.stderr)
    dts = "adapters %s, calibrations %s" % (exp.get("adapter_dtype", "f16"), exp.get("calibration_dtype", "f16"))
    out = ["| task | method | quality, calibrate (f32) | quality, bundle | Δ | rate, calibrate | rate, bundle "
           "| identical predictions |", "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, method, q0, q1, r0, r1, same, n in rows:
        fr = (lambda r: "–" if r is None else "%.2f" % r)
        out.append("| %s | %s | %.4f | %.4f | %+.4f | %s | %s | %d / %d |" % (name, method, q0, q1, q1 - q0, fr(r0),
                                                                           fr(r1), same, n))
    n_all = sum(r[7] for r in rows)
    same_all = sum(r[6] for r in rows)
    mq0 = sum(r[2] for r in rows) / len(rows)
    mq1 = sum(r[3] for r in rows) / len(rows)
    text = ("# The bundle as shipped\n\n`%s` (%s) scored by `evaluate` with its `bundle` key, against "
            "`calibrate`'s float32 jobs on the same test examples and settings "
            "(`scripts/bundle_check.py`). Mean quality %.4f -> %.4f; %d of %d predictions identical.\n\n"
            % (os.path.basename(bundle), dts, mq0, mq1, same_all, n_all)) + "\n".join(out) + "\n"
    with open(a.out_md, "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
