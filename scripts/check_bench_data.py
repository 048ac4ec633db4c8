#!/usr/bin/env python3
"""Checks that every data file the benchmark configs in CONFIG_DIR name
exists (for data a user exported, which scripts/benchmark.sh does not build).

    python3 scripts/check_bench_data.py configs/benchmark/NAME

Prints each missing file with the config that needs it; exit 1 if any.
"""
import glob
import json
import os
import sys


def data_paths(cfg_path):
    with open(cfg_path, encoding="utf-8") as f:
        c = json.load(f)
    base = os.path.dirname(cfg_path)
    sections = [c.get("data", {})] + [t.get("data", {}) for t in c.get("tasks", [])]
    for d in sections:
        for k in ("train", "validation", "test"):
            if isinstance(d.get(k), str):
                yield os.path.normpath(os.path.join(base, d[k]))


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip())
    missing = {}
    n = 0
    for cfg in sorted(glob.glob(os.path.join(sys.argv[1], "*.json"))):
        if os.path.basename(cfg) in ("data.json", "pretrain-data.json", "model-config.json"):
            continue
        for p in data_paths(cfg):
            n += 1
            if not os.path.exists(p):
                missing.setdefault(p, os.path.basename(cfg))
    for p, cfg in sorted(missing.items()):
        print("missing: %s (needed by %s)" % (p, cfg), file=sys.stderr)
    if missing:
        print("%d of the data files the configs in %s name are missing (see configs/paper/README.md "
              "for the layout)" % (len(missing), sys.argv[1]), file=sys.stderr)
        return 1
    print("check_bench_data: all %d data files named by %s exist" % (n, sys.argv[1]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
