#!/usr/bin/env python3
"""Trains a byte-level BPE tokenizer (GPT-2 style) on a JSONL text corpus and
writes a Hugging Face tokenizer.json, for a base the toolchain pretrains
itself (scripts/benchmark.sh, configs/benchmark/<name>/pretrain.json).

    python3 scripts/train_bpe.py CORPUS.jsonl OUT_DIR [--field text] [--vocab 2048]

Ids: 0..255 are the 256 bytes (GPT-2's byte-to-character map, as in
scripts/make_toy_data.py), 256 is <s> (BOS), 257 is </s> (EOS), both in the
model's vocabulary and as special added tokens, 258.. are the merges in the
order they were learnt. Text equal to a special token is split off before
training, as encoding does. Pre-tokenisation is the ByteLevel
pre-tokenizer with GPT-2's regex (that is what the written tokenizer.json
says, and what build/bin/* and Hugging Face tokenizers run when encoding);
training splits words with a Python approximation of that regex, which only
affects which merges are learnt, never how a text is encoded. Merges are
picked by count, ties broken by the pair's characters, so the same corpus
gives the same bytes. Writes OUT_DIR/tokenizer.json and tokenizer_config.json.
"""
import argparse
import collections
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_toy_data import byte_level_tokenizer  # noqa: E402

# GPT-2's pattern, with \p{L} as [^\W\d_] and \p{N} as \d
WORD_RX = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


def train(texts, vocab_size, log=lambda s: None):
    tok = byte_level_tokenizer()
    byte_char = {b: c for c, b in tok["model"]["vocab"].items()}
    specials = [t["content"] for t in tok["added_tokens"]]
    split_rx = re.compile("|".join(re.escape(x) for x in specials))
    words = collections.Counter()
    for t in texts:
        for part in split_rx.split(t):  # encoding splits special tokens off first, so does training
            for w in WORD_RX.findall(part):
                words["".join(byte_char[b] for b in w.encode("utf-8"))] += 1
    syms = [list(w) for w in words]
    freq = list(words.values())
    pairs = collections.Counter()
    where = collections.defaultdict(set)
    for i, s in enumerate(syms):
        for a, b in zip(s, s[1:]):
            pairs[a, b] += freq[i]
            where[a, b].add(i)
    merges = []
    n_merges = vocab_size - 258
    while len(merges) < n_merges and pairs:
        best = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        (a, b), c = best
        if c < 2:
            break
        merges.append((a, b))
        ab = a + b
        for i in sorted(where.pop((a, b), ())):
            s = syms[i]
            for x, y in zip(s, s[1:]):
                pairs[x, y] -= freq[i]
                if pairs[x, y] <= 0:
                    del pairs[x, y]
            out, j = [], 0
            while j < len(s):
                if j + 1 < len(s) and s[j] == a and s[j + 1] == b:
                    out.append(ab)
                    j += 2
                else:
                    out.append(s[j])
                    j += 1
            syms[i] = out
            for x, y in zip(out, out[1:]):
                pairs[x, y] += freq[i]
                where[x, y].add(i)
        if len(merges) % 500 == 0:
            log("%d merges" % len(merges))
    # the special tokens are in the model's vocabulary too (as GPT-2's
    # <|endoftext|> is): Hugging Face numbers added tokens that are missing
    # from it after the vocabulary, whatever id tokenizer.json gives them
    vocab = dict(tok["model"]["vocab"])
    for t in tok["added_tokens"]:
        vocab[t["content"]] = t["id"]
    for a, b in merges:
        if a + b not in vocab:  # two merges may spell the same token; it keeps its first id
            vocab[a + b] = len(vocab)
    tok["model"]["vocab"] = vocab
    tok["model"]["merges"] = ["%s %s" % m for m in merges]
    return tok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("out_dir")
    ap.add_argument("--field", default="text")
    ap.add_argument("--vocab", type=int, default=2048, help="vocabulary size incl. 256 bytes and 2 specials")
    a = ap.parse_args()
    if a.vocab < 258:
        ap.error("--vocab must be at least 258 (256 bytes + <s> + </s>)")
    t0 = time.time()
    texts = []
    with open(a.corpus, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                r = json.loads(line)
                texts.append(r[a.field])
            except (ValueError, KeyError, TypeError) as e:
                sys.exit("train_bpe: %s:%d: bad row (%s)" % (a.corpus, n, e))
    tok = train(texts, a.vocab, lambda s: print("train_bpe: " + s, file=sys.stderr))
    os.makedirs(a.out_dir, exist_ok=True)
    with open(os.path.join(a.out_dir, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(tok, f, ensure_ascii=False)
    with open(os.path.join(a.out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>"}, f)
    print("train_bpe: %d texts -> %d tokens (%d merges) in %s in %.1fs"
          % (len(texts), len(tok["model"]["vocab"]), len(tok["model"]["merges"]),
             os.path.join(a.out_dir, "tokenizer.json"), time.time() - t0), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
