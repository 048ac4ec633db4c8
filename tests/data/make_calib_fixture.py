#!/usr/bin/env python3
"""Small compositional fixture for tests/test_calibrate.c, made from
../shared's DialogSum (deterministic; nothing random):

  summarize.jsonl   {dialogue, summary}   single task
  formal.jsonl      {text, formal}        single task (rule-made tone)
  casual.jsonl      {text, casual}        single task (rule-made tone)
  comp_<tone>_{train,dev,test}.jsonl {dialogue, target}: tone(summary)

The tone rules: formal = "Dear colleague, " + text + " Kind regards.",
casual = "Hey! " + text + " Cheers!" (rules, not a corpus; enough for a
test that calibration learns the composition).

    make_calib_fixture.py DIALOGSUM_DIR OUTDIR [--n 240]
"""
import json
import os
import sys


def formal(s):
    return "Dear colleague, " + s.strip() + " Kind regards."


def casual(s):
    return "Hey! " + s.strip() + " Cheers!"


def main():
    src, out = sys.argv[1], sys.argv[2]
    n = int(sys.argv[sys.argv.index("--n") + 1]) if "--n" in sys.argv else 200
    rows = []
    with open(os.path.join(src, "train.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if len(r["dialogue"]) < 700:  # short dialogues keep the test fast
                rows.append(r)
            if len(rows) >= 5 * n:
                break
    os.makedirs(out, exist_ok=True)

    def write(name, items):
        with open(os.path.join(out, name), "w", encoding="utf-8") as f:
            for it in items:
                f.write(json.dumps(it, ensure_ascii=False) + "\n")

    a, b, c = rows[:n], rows[n:2 * n], rows[2 * n:3 * n]
    write("summarize.jsonl", [{"dialogue": r["dialogue"], "summary": r["summary"]} for r in a])
    write("formal.jsonl", [{"text": r["summary"], "formal": formal(r["summary"])} for r in b])
    write("casual.jsonl", [{"text": r["summary"], "casual": casual(r["summary"])} for r in c])
    for k, (name, fn) in enumerate([("formal", formal), ("casual", casual)]):
        part = rows[(3 + k) * n:(4 + k) * n]
        comp = [{"dialogue": r["dialogue"], "target": fn(r["summary"])} for r in part]
        m = len(comp)
        write("comp_%s_train.jsonl" % name, comp[: m * 3 // 5])
        write("comp_%s_dev.jsonl" % name, comp[m * 3 // 5: m * 4 // 5])
        write("comp_%s_test.jsonl" % name, comp[m * 4 // 5:])

if __name__ == "__main__":
    main()
