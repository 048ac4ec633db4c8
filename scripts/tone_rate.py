#!/usr/bin/env python3
"""Fraction of predictions that carry a tone's rule markers.

    python3 scripts/tone_rate.py PREDICTIONS.jsonl TONE [--field prediction]

TONE is one of professional, casual, witty, paraphrase. The markers are the
fixed openers/closers of scripts/tone_rules.py (tone_score: professional =
one of its closers and no contraction; casual, witty = one of their openers
or closers; paraphrase = one of its openers). Prints JSON to stdout:

    {"tone", "n", "rate", "other_tones": {tone: rate}, "empty", "hits"}

(hits: 1 or 0 per line, in file order.)

What it can detect: whether an output reproduces the rule-made style
markers the references were built with (the references score 1.0). What it
cannot: register, fluency, meaning, or whether the rest of the text was
rewritten; a bare marker scores 1. other_tones shows the same rate for the
other tones (a system that mixes up tones scores there).
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tone_rules  # noqa: E402
from lang_rate import read_field  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("predictions")
    ap.add_argument("tone", choices=tone_rules.TONES)
    ap.add_argument("--field", default="prediction")
    args = ap.parse_args()
    texts = read_field(args.predictions, args.field, "tone_rate")
    n = len(texts)

    def rate(tn):
        return sum(tone_rules.tone_score(t, tn) for t in texts) / n if n else 0.0
    out = {"tone": args.tone, "n": n, "rate": rate(args.tone),
           "other_tones": {tn: rate(tn) for tn in tone_rules.TONES if tn != args.tone},
           "empty": sum(1 for t in texts if not t.strip()),
           "hits": [int(tone_rules.tone_score(t, args.tone)) for t in texts]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
