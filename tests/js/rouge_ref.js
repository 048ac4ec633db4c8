#!/usr/bin/env node
// rouge_ref.js: js-rouge scores configured to reproduce Google's rouge-score
// (no stemming), the independent reference for calibrate/lib/metrics.c.
//
// Reads JSONL from stdin, one {"cand": "...", "ref": "..."} per line, and
// writes one line per input line:
//   "<p1> <r1> <f1> <p2> <r2> <f2> <p3> <r3> <f3> <pL> <rL> <fL>"
// (ROUGE-1, -2, -3, -L precision/recall/F1 with %.17g-like precision), or
//   "EMPTY" when js-rouge refuses the pair (candidate or reference is empty
//   or whitespace-only; rouge-score scores such pairs 0).
//
// js-rouge only returns an F-measure; fMeasure(p, r, beta) returns p exactly
// for beta = 0 and r exactly for beta = Infinity (and 0 for both when there is
// no match, as rouge-score), so P and R come from the same call with those
// betas. The tokenizer is rouge-score's (GUIDE.md section 6); the segmenter
// [s] makes ROUGE-L the whole-text LCS (rougeL, not the sentence-union LCS).
'use strict';

const path = require('path');
const readline = require('readline');

let rouge;
try {
  rouge = require(path.join(__dirname, 'node_modules', 'js-rouge'));
} catch (e) {
  process.stderr.write('rouge_ref.js: js-rouge is not installed in tests/js/node_modules; run scripts/setup.sh\n');
  process.exit(2);
}

const tok = (s) => s.toLowerCase().replace(/[^a-z0-9]+/g, ' ').split(/\s+/).filter((x) => x);

function prfN(c, r, n) {
  const o = (beta) => rouge.n(c, r, { n, tokenizer: tok, beta });
  return [o(0), o(Infinity), o(1)];
}

function prfL(c, r) {
  const o = (beta) => rouge.l(c, r, { tokenizer: tok, segmenter: (s) => [s], beta });
  return [o(0), o(Infinity), o(1)];
}

const fmt = (x) => (Number.isInteger(x) ? String(x) : x.toPrecision(17));

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
const out = [];
rl.on('line', (line) => {
  if (!line.trim()) return;
  const { cand, ref } = JSON.parse(line);
  let row;
  try {
    row = [...prfN(cand, ref, 1), ...prfN(cand, ref, 2), ...prfN(cand, ref, 3), ...prfL(cand, ref)]
      .map(fmt)
      .join(' ');
  } catch (e) {
    if (!(e instanceof RangeError) || !/empty/.test(e.message)) throw e;
    row = 'EMPTY';
  }
  out.push(row);
});
rl.on('close', () => {
  process.stdout.write(out.join('\n') + (out.length ? '\n' : ''));
});
