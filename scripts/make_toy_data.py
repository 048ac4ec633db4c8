#!/usr/bin/env python3
"""Writes the README demo's embedded default: a small, deterministic
dialogue -> summary data set made from templates (no download), two
rule-made tones, the compositional tasks "summary + tone", a byte-level
tokenizer.json (256 byte tokens + <s>, </s>; no merges) and a tiny
Llama-style config.json to pretrain from scratch.

    python3 scripts/make_toy_data.py OUTDIR [--seed 1] [--train 3000] [--test 100]

Files (the same seed gives the same bytes):
  {train,dev,test}.jsonl      {dialogue, summary}: single task "summarize"
  tone_{train,dev}.jsonl      {text, formal, casual}: single tasks "formal",
                              "casual" (rewrite a sentence in that tone)
  comp_<tone>_{train,dev,test}.jsonl {dialogue, target}: the compositional
                              task "summary in that tone" (other dialogues)
  pretrain.jsonl              {text}: dialogues, summaries and toned
                              sentences, the base model's pretraining text
  tokenizer.json, tokenizer_config.json, config.json

The tones are rules, not a corpus: formal = "Dear colleague, " + s +
" Kind regards.", casual = "Hey! " + s + " Cheers!"."""
import argparse
import json
import os
import random

ITEMS = ["apple", "book", "ticket", "shirt", "lamp", "chair", "cake", "pen", "phone", "bag"]
NAMES = ["Tom", "Anna", "Lee", "Maria", "Sam", "Olga", "Ben", "Lucy"]
PLACES = ["the station", "the park", "the office", "the bank", "the market", "school"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def dialogue(rng):
    kind = rng.randrange(3)
    if kind == 0:
        n, item, price = rng.randint(2, 9), rng.choice(ITEMS), rng.randint(3, 90)
        react = rng.choice(["Great, thanks.", "Fine, I will take them.", "OK, here you are."])
        d = (f"#Person1#: Hello, I would like to buy {n} {item}s.\n"
             f"#Person2#: Sure, that will be {price} dollars.\n#Person1#: {react}")
        s = f"#Person1# buys {n} {item}s for {price} dollars."
    elif kind == 1:
        name, place, day = rng.choice(NAMES), rng.choice(PLACES), rng.choice(DAYS)
        d = (f"#Person1#: Where will you meet {name}?\n"
             f"#Person2#: At {place} on {day}.\n#Person1#: Say hello from me.")
        s = f"#Person2# will meet {name} at {place} on {day}."
    else:
        name, hours = rng.choice(NAMES), rng.randint(2, 12)
        d = (f"#Person1#: Why is {name} tired?\n"
             f"#Person2#: {name} worked for {hours} hours today.\n#Person1#: That is a lot.")
        s = f"{name} is tired after working {hours} hours."
    return d, s


def formal(s):
    return "Dear colleague, " + s + " Kind regards."


def casual(s):
    return "Hey! " + s + " Cheers!"


TONES = {"formal": formal, "casual": casual}


def byte_level_tokenizer():
    # GPT-2's byte -> printable character map
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    chars = {b: chr(c) for b, c in zip(bs, cs)}
    vocab = {chars[b]: b for b in range(256)}
    special = [{"id": 256, "content": "<s>"}, {"id": 257, "content": "</s>"}]
    added = [dict(t, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
             for t in special]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                          "use_regex": True},
        "post_processor": {"type": "TemplateProcessing",
                           "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                      {"Sequence": {"id": "A", "type_id": 0}}],
                           "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
                           "special_tokens": {"<s>": {"id": "<s>", "ids": [256], "tokens": ["<s>"]}}},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "vocab": vocab, "merges": []},
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train", type=int, default=3000)
    ap.add_argument("--test", type=int, default=100)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    splits = {"train": a.train, "dev": a.test, "test": a.test}
    rows = {k: [dialogue(rng) for _ in range(n)] for k, n in splits.items()}
    for k, rs in rows.items():
        with open(os.path.join(a.out, k + ".jsonl"), "w") as f:
            for d, s in rs:
                f.write(json.dumps({"dialogue": d, "summary": s}) + "\n")
    # single-task tone data: sentences (summaries of other dialogues) rewritten
    tone = {"train": [dialogue(rng)[1] for _ in range(a.train // 2)],
            "dev": [dialogue(rng)[1] for _ in range(a.test)]}
    for k, ss in tone.items():
        with open(os.path.join(a.out, "tone_%s.jsonl" % k), "w") as f:
            for s in ss:
                f.write(json.dumps({"text": s, "formal": formal(s), "casual": casual(s)}) + "\n")
    # compositional tasks: summary in a tone, on dialogues of their own
    comp = {"train": a.train // 6, "dev": a.test // 2, "test": a.test // 2}
    for name, fn in TONES.items():
        for k, n in comp.items():
            with open(os.path.join(a.out, "comp_%s_%s.jsonl" % (name, k)), "w") as f:
                for _ in range(n):
                    d, s = dialogue(rng)
                    f.write(json.dumps({"dialogue": d, "target": fn(s)}) + "\n")
    # pretraining text: dialogues, summaries and toned sentences as plain text
    with open(os.path.join(a.out, "pretrain.jsonl"), "w") as f:
        for d, s in rows["train"]:
            f.write(json.dumps({"text": d}) + "\n")
            f.write(json.dumps({"text": s}) + "\n")
        for s in tone["train"]:
            f.write(json.dumps({"text": formal(s)}) + "\n")
            f.write(json.dumps({"text": casual(s)}) + "\n")
    with open(os.path.join(a.out, "tokenizer.json"), "w") as f:
        json.dump(byte_level_tokenizer(), f)
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<s>", "eos_token": "</s>"}, f)
    cfg = {"model_type": "llama", "hidden_size": 96, "num_hidden_layers": 3,
           "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 256,
           "vocab_size": 258, "max_position_embeddings": 256, "rms_norm_eps": 1e-5,
           "rope_theta": 10000.0, "tie_word_embeddings": True, "bos_token_id": 256,
           "eos_token_id": 257}
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)


if __name__ == "__main__":
    main()
