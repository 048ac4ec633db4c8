#!/usr/bin/env python3
"""Turns a `calibrate` run over the compositional benchmark into the paper's
tables and a plot.

    bench_tables.py CALIBRATE_DIR OUTDIR [--config CALIBRATE_JSON] [--lid-model PATH] [--title TEXT]

Task names follow "<main>+<aux>": main in {summary, reply}; aux a language
(es, ca, fr) or a tone (professional, casual, witty, paraphrase). For every
(task, method) job it reads results.json and predictions.jsonl and adds the
success rate of the auxiliary task: the fraction of outputs fastText
(lid.176.ftz, `scripts/lang_rate.py`) identifies as the requested language,
or the fraction carrying the tone's rule markers (`scripts/tone_rate.py`).

Writes to OUTDIR:
  results.csv / results.json   one row per (task, method) with every score
  table1.md                    methods x the four task types: ROUGE-L
                               (summaries) or weighted ROUGE (replies), and
                               the language / tone success rate, each the
                               mean over the type's variants
  table2.md                    inferences, extra parameters (and as a % of
                               one LoRA of the benchmark's rank) and extra
                               storage (fp16) per task and for all tasks
  comparisons.md               the --compare methods (default LC++, LC) minus
                               every other method in mean quality and success
                               rate, with 95 % paired-bootstrap intervals
  quality_vs_storage.png       (gnuplot) mean quality against extra storage
"""
import argparse
import glob
import csv
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LANGS = {"es", "ca", "fr"}
TYPES = [("summary", "lang", "Summary + translation"), ("summary", "tone", "Summary + tone"),
         ("reply", "lang", "Reply + translation"), ("reply", "tone", "Reply + tone")]


TONES = ("professional", "casual", "witty", "paraphrase")


def run_json(cmd):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def finished_jobs(caldir):
    """Every finished job of a calibrate run, as its results.json (which
    names the job's "task" and "method") with the job's folder added as
    "_dir", in path order. Folders are found, never named: calibrate's
    folder-name rule (kernels/base/lc_slug.c) applies to tasks and methods
    alike, and results.json does not record the folder."""
    out = []
    for p in sorted(glob.glob(os.path.join(caldir, "*", "*", "results.json"))):
        with open(p) as f:
            out.append(json.load(f))
        out[-1]["_dir"] = os.path.dirname(p)
    return out


_job_dirs = {}  # caldir -> {(task, method): folder}, read once per run folder


def job_dir(caldir, task, method):
    """The folder of the (task, method) job of a calibrate run: the one whose
    results.json names that task and method (the first in path order)."""
    if caldir not in _job_dirs:
        index = {}
        for r in finished_jobs(caldir):
            index.setdefault((r.get("task"), r.get("method")), r["_dir"])
        _job_dirs[caldir] = index
    d = _job_dirs[caldir].get((task, method))
    if d is not None:
        return d
    sys.exit("bench_tables: no finished job for task %r, method %r in %s" % (task, method, caldir))


def task_quality(main_task, r):
    """The table's quality of a job's results.json or of one predictions.jsonl
    line: weighted ROUGE for reply tasks, ROUGE-L F1 otherwise."""
    v = r["weighted_rouge"] if main_task == "reply" else r["rougeL"]
    return v["f1"] if isinstance(v, dict) else v


def aux_rate(pred, aux):
    """lang_rate.py's or tone_rate.py's JSON for a predictions file, or None
    when aux is neither a benchmark language nor a tone."""
    if aux not in LANGS and aux not in TONES:
        return None
    script = "lang_rate.py" if aux in LANGS else "tone_rate.py"
    return run_json([sys.executable, os.path.join(HERE, script), pred, aux])


def collect(caldir, order=()):
    """Every finished "<main>+<aux>" job under caldir (read job by job: the
    run's summary results.json only lists the jobs of the last `calibrate`
    call, so a resumed or partial run is complete this way), sorted by the
    method order given (e.g. calibrate.json's). Returns (rows, per_example):
    one row per job with its scores and success rate, and per (task, method)
    the example lines, qualities and success hits."""
    allres = finished_jobs(caldir)
    if not allres:
        sys.exit("bench_tables: no finished jobs (CALIBRATE_DIR/<task>/<method>/results.json) in %s" % caldir)
    order = list(order)
    allres.sort(key=lambda r: (order.index(r["method"]) if r["method"] in order else len(order), r["method"],
                               r["task"]))
    rows, per_example = [], {}
    for r in allres:
        task, method = r["task"], r["method"]
        if "+" not in task:
            continue
        main_t, aux = task.split("+", 1)
        kind = "lang" if aux in LANGS else "tone"
        pred = os.path.join(r["_dir"], "predictions.jsonl")
        rr = aux_rate(pred, aux)
        with open(pred, encoding="utf-8") as f:
            ex = [json.loads(line) for line in f if line.strip()]
        per_example[(task, method)] = ([e.get("line") for e in ex], [task_quality(main_t, e) for e in ex],
                                       rr["hits"])
        rows.append({"task": task, "main": main_t, "aux": aux, "kind": kind, "method": method,
                     "type": r["type"], "n": r["n"], "quality": task_quality(main_t, r),
                     "rougeL": r["rougeL"]["f1"], "weighted_rouge": r["weighted_rouge"],
                     "chrf": r["chrf_corpus"], "success_rate": rr["rate"],
                     "inference_passes": r["inference_passes"], "extra_params": r["extra_params"],
                     "extra_bytes_fp16": r["extra_bytes_fp16"], "family": r.get("family", ""),
                     "shared": bool((r.get("calibration") or {}).get("shared"))})
    return rows, per_example


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def type_means(rows, method):
    """Per task type of TYPES: (mean quality, mean success rate) over the
    type's variants for method, or None where it has no job."""
    out = []
    for m, k, _ in TYPES:
        sel = [r for r in rows if r["method"] == method and r["main"] == m and r["kind"] == k]
        out.append((mean([r["quality"] for r in sel]), mean([r["success_rate"] for r in sel])) if sel else None)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("caldir")
    ap.add_argument("out")
    ap.add_argument("--title", default="compositional benchmark")
    ap.add_argument("--config", help="the calibrate.json of the run: table rows follow its method order")
    ap.add_argument("--compare", default="LC++,LC",
                    help="methods to compare with every other one in comparisons.md (default LC++,LC)")
    ap.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    ap.add_argument("--seed", type=int, default=1, help="bootstrap seed (default 1)")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    order = []
    if a.config:
        with open(a.config) as f:
            order = [m["name"] for m in json.load(f)["methods"]]
    rows, per_example = collect(a.caldir, order)
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(a.out, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
    methods = []
    for r in rows:
        if r["method"] not in methods:
            methods.append(r["method"])

    # Table 1
    t1 = ["| method | " + " | ".join("%s: %s | %s: %s" % (n, "ROUGE-L" if m == "summary" else "wROUGE",
                                                          n, "language" if k == "lang" else "tone")
                                       for m, k, n in TYPES) + " |",
          "| --- |" + " ---: | ---: |" * len(TYPES)]
    summary = {}
    for meth in methods:
        per = type_means(rows, meth)
        cells = [c for t in per for c in (("%.4f" % t[0], "%.3f" % t[1]) if t else ("–", "–"))]
        summary[meth] = mean([t[0] for t in per if t])
        t1.append("| %s | %s |" % (meth, " | ".join(cells)))
    with open(os.path.join(a.out, "table1.md"), "w") as f:
        f.write("\n".join(t1) + "\n")
    # Table 2
    ntasks = len({r["task"] for r in rows})
    # a single-task LoRA's size, for the "% of a LoRA" column: the joint
    # expert is a LoRA of the same rank and modules
    lora = max((r["extra_params"] for r in rows if r["type"] == "joint_expert"), default=0)
    t2 = ["| method | inferences | extra parameters per task | %% of one LoRA | extra MB per task (fp16) "
          "| extra MB, all %d tasks |" % ntasks, "| --- | ---: | ---: | ---: | ---: | ---: |"]
    storage = {}
    for meth in methods:
        sel = [r for r in rows if r["method"] == meth]
        per = max(r["extra_params"] for r in sel)
        if any(r["shared"] for r in sel):  # stored once per family, not per task
            fam = {}
            for r in sel:
                fam[r["family"]] = max(fam.get(r["family"], 0), r["extra_bytes_fp16"])
            tot = sum(fam.values()) / 1e6
        else:
            tot = sum(r["extra_bytes_fp16"] for r in sel) / 1e6
        storage[meth] = tot
        pct = "%.2f" % (100.0 * per / lora) if lora else "–"
        t2.append("| %s | %d | %d | %s | %.4f | %.4f |" % (meth, sel[0]["inference_passes"], per, pct,
                                                          2 * per / 1e6, tot))
    with open(os.path.join(a.out, "table2.md"), "w") as f:
        f.write("\n".join(t2) + "\n")
    # paired bootstrap: the focus methods against every other method
    comp = comparisons(rows, methods, per_example, a.compare, a.bootstrap, a.seed)
    with open(os.path.join(a.out, "comparisons.md"), "w") as f:
        f.write(comp)

    # plot: one point per method, coloured by group; labels that would
    # collide (e.g. the training-free methods, all at zero storage) are
    # spread apart vertically with a leader line to their point
    mtype = {r["method"]: r["type"] for r in rows}
    group = {m: (2 if mtype[m] == "calibrate" else 1 if mtype[m] == "merge" else 0) for m in methods}
    pts = [(storage[m] + 1e-4, summary[m], m) for m in methods if summary[m] == summary[m]]
    xr = (1e-4 / 1.4, max(p[0] for p in pts) * 30)
    ylo, yhi = min(p[1] for p in pts), max(p[1] for p in pts)
    yr = (min(0.0, ylo), yhi + 0.08 * ((yhi - min(0.0, ylo)) or 1.0))
    label_at = place_labels(pts, xr, yr)
    dat = os.path.join(a.out, "quality_vs_storage.dat")
    with open(dat, "w") as f:
        for g in range(3):
            for x, y, m in pts:
                if group[m] == g:
                    f.write('%.6f %.6f %.6f %.6f "%s"\n' % (x, y, label_at[m][0], label_at[m][1], m))
            f.write("\n\n")
    gp = """set terminal pngcairo size 900,560
set output '%s'
set title '%s: quality against extra storage'
set xlabel 'extra storage for all tasks (MB, fp16; log scale, 0 drawn at 1e-4)'
set ylabel 'mean quality (ROUGE-L / weighted ROUGE)'
set logscale x
set format x "%%g"
set grid
set key bottom right box opaque
set xrange [%g:%g]
set yrange [%g:%g]
plot for [g=0:2] '%s' index g using 1:2 with points pt 7 ps 1.5 lc g+1 title word('baselines merges calibration', g+1), \\
     for [g=0:2] '' index g using 1:2:($3-$1):($4-$2) with vectors nohead lc rgb '#999999' notitle, \\
     for [g=0:2] '' index g using 3:4:5 with labels offset 1,0 left font ',9' notitle
""" % (os.path.join(a.out, "quality_vs_storage.png"), a.title, xr[0], xr[1], yr[0], yr[1], dat)
    subprocess.run(["gnuplot"], input=gp, text=True, check=True)
    print(open(os.path.join(a.out, "table1.md")).read())
    print(open(os.path.join(a.out, "table2.md")).read())


def comparisons(rows, methods, per_example, compare, n_boot, seed):
    """Markdown: for each focus method F and every other method M, the
    difference F - M in the mean quality and the mean success rate as Table 1
    and the plot average them (the mean over the four task types of the mean
    over their variants of the mean over test examples), with a 95 %
    paired-bootstrap interval: test examples are resampled within each
    variant, the same examples for both methods."""
    import numpy as np
    rng = np.random.default_rng(seed)
    tasks = sorted({r["task"] for r in rows})
    kind = {r["task"]: (r["main"], r["kind"]) for r in rows}
    # one set of resampled example indices per variant, shared by every comparison
    n_ex = {}
    for t in tasks:
        lines = {tuple(per_example[(t, m)][0]) for m in methods if (t, m) in per_example}
        if len(lines) != 1:
            return "comparisons: the methods of %s were evaluated on different examples; none made\n" % t
        n_ex[t] = len(next(iter(lines)))
    idx = {t: rng.integers(0, n_ex[t], size=(n_boot, n_ex[t])) for t in tasks}

    def stat(f, m, which):
        """(point estimate, bootstrap samples) of F - M, or None."""
        by_type = {}
        for t in tasks:
            if (t, f) not in per_example or (t, m) not in per_example:
                return None
            d = np.asarray(per_example[(t, f)][which], float) - np.asarray(per_example[(t, m)][which], float)
            by_type.setdefault(kind[t], []).append((d.mean(), d[idx[t]].mean(axis=1)))
        point = np.mean([np.mean([p for p, _ in v]) for v in by_type.values()])
        boots = np.mean([np.mean([b for _, b in v], axis=0) for v in by_type.values()], axis=0)
        return point, boots

    out = ["# Paired comparisons", "",
           "Difference (focus method minus the row's method) in mean quality (ROUGE-L for summaries, "
           "weighted ROUGE for replies) and in the mean language/tone success rate, each averaged as "
           "Table 1 and the plot average them (over the four task types, each the mean over its variants), "
           "with a 95 %% paired-bootstrap interval (%d resamples of the test examples within each variant, "
           "seed %d). An interval that excludes 0 is marked \\*. The interval covers the sampling of the "
           "test examples only: training seeds were not varied, so it does not say how much a "
           "retrained LoRA or calibration would move." % (n_boot, seed), ""]
    for f in [x.strip() for x in compare.split(",") if x.strip()]:
        if f not in methods:
            continue
        out += ["## %s against each method" % f, "",
                "| method | Δ quality | 95 % interval | Δ success rate | 95 % interval |", "| --- | ---: | :---: | ---: | :---: |"]
        for m in methods:
            if m == f:
                continue
            cells = []
            for which in (1, 2):
                r = stat(f, m, which)
                if r is None:
                    cells += ["–", "–"]
                    continue
                point, boots = r
                lo, hi = np.percentile(boots, [2.5, 97.5])
                mark = "\\*" if lo > 0 or hi < 0 else ""
                cells += ["%+.4f%s" % (point, mark), "[%+.4f, %+.4f]" % (lo, hi)]
            out.append("| %s | %s |" % (m, " | ".join(cells)))
        out.append("")
    return "\n".join(out) + "\n"


def place_labels(pts, xr, yr, width_px=770, height_px=440, char_px=6.2, line_px=11.5, shift=0.3):
    """Label positions for (x, y, name) points on a log-x plot with ranges
    xr, yr. A label is a box as wide as its text, starting one character
    right of its anchor. Labels are placed from the top down: beside their
    point if that is free, else `shift` decades to the right at the nearest
    free height (tried alternately above and below), to be joined to the
    point by a leader line; clear of other labels and of the points.
    Returns {name: (label_x, label_y)}."""
    import math
    lx0, lx1 = math.log10(xr[0]), math.log10(xr[1])
    cw = char_px * (lx1 - lx0) / width_px          # one character, in decades
    lh = line_px * (yr[1] - yr[0]) / height_px     # one line, in y units
    # the points themselves are obstacles too
    placed = [(math.log10(x) - cw, math.log10(x) + cw, y) for x, y, _ in pts]
    out = {}
    for x, y, name in sorted(pts, key=lambda p: -p[1]):
        cands = [(0.0, y)] + [(shift, y + (k + 1) // 2 * lh * 0.5 * (-1 if k % 2 else 1)) for k in range(400)]
        for dx, ty in cands:
            bx0 = math.log10(x) + dx + cw
            bx1 = bx0 + cw * (len(name) + 1)
            if not any(bx0 < q1 and q0 < bx1 and abs(ty - qy) < lh for q0, q1, qy in placed):
                break
        placed.append((bx0, bx1, ty))
        out[name] = (x * 10 ** dx, ty)
    return out


if __name__ == "__main__":
    main()
