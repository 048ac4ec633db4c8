#!/usr/bin/env python3
"""Small compositional fixture for tests/test_calibrate.c, made from
../shared's DialogSum (deterministic; nothing random):

  summarize.jsonl   {dialogue, summary}            single task 1
  formal.jsonl      {text, formal}                 single task 2 (rule-made tone)
  comp_{train,dev,test}.jsonl {dialogue, target}   compositional: formal(summary)

The tone rule: "Dear colleague, " + text + " Kind regards." (a rule, not a
corpus; enough for a test that calibration learns the composition).

    make_calib_fixture.py DIALOGSUM_DIR OUTDIR [--n 240]
"""
import json
import os
import sys


def formal(s):
    return "Dear colleague, " + s.strip() + " Kind regards."


def main():
    src, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[sys.argv.index("--n") + 1]) if "--n" in sys.argv else 240
    rows = []
    with open(os.path.join(src, "train.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if len(r["dialogue"]) < 700:  # short dialogues keep the test fast
                rows.append(r)
            if len(rows) >= 3 * n:
                break
    os.makedirs(out, exist_ok=True)

    def write(name, items):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            for it in items:
                f.write(json.dumps(it, ensure_ascii=False) + "\n")

    a, b, c = rows[:n], rows[n:2 * n], rows[2 * n:]
    write("summarize.jsonl", [{"dialogue": r["dialogue"], "summary": r["summary"]} for r in a])
    write("formal.jsonl", [{"text": r["summary"], "formal": formal(r["summary"])} for r in b])
    comp = [{"dialogue": r["dialogue"], "target": formal(r["summary"])} for r in c]
    k = len(comp)
    write("comp_train.jsonl", comp[: k * 3 // 5])
    write("comp_dev.jsonl", comp[k * 3 // 5: k * 4 // 5])
    write("comp_test.jsonl", comp[k * 4 // 5:])


if __name__ == "__main__":
    main()
