#!/usr/bin/env python3
"""Rule-made tone rewriting for the benchmark (scripts/make_benchmark_data.py).

THESE TONES ARE NOT HUMAN DATA. No tone-adjustment corpus is reachable from
this project, so the "professional", "casual", "witty" and "paraphrase"
references are produced by the deterministic rules below from English
DialogSum text (human summaries and human dialogue turns). A model trained on
them learns these rules, not a real register; numbers measured on them say how
well a system reproduces the rules.

    tone(text, name) -> rewritten text       (pure function of its arguments)
    tone_markers(text, name) -> list of the tone's fixed markers found
    tone_score(text, name) -> 1.0 if the text carries the tone's markers, else 0.0

| tone | word-level rules (in this order) | fixed marker added (always exactly one) |
| --- | --- | --- |
| professional | expand contractions (don't -> do not, I'm -> I am, it's -> it is, 's been -> has been, won't -> will not, can't -> cannot, ...); formal synonyms (buy -> purchase, need -> require, help -> assist (verb positions only), kids -> children, ok/okay -> very well, yeah/yep -> yes, thanks -> thank you, get -> obtain before a/an/the/some, a lot of -> a great deal of, big -> substantial, ...) | one closer: "Kind regards." / "Best regards." / "Thank you for your attention." / "With kind regards." |
| casual | contract (do not -> don't, I am -> I'm, it is -> it's, you are -> you're, will not -> won't, cannot -> can't, ... only when a word follows, never at a clause end); casual synonyms (purchase -> buy, children -> kids, thank you -> thanks, yes -> yeah, very -> super, hello -> hey, however -> but, ...) | one opener: "Hey! " / "Hi there! " / "Oh hey! " / "Alright! " and one closer: "Cheers!" / "No worries." / ":)" / "Catch you later!" |
| witty | playful intensifiers (very -> ridiculously, good -> splendid, bad -> dreadful, big -> colossal, small -> teeny, happy -> over the moon, tired -> utterly pooped, ...) | one opener: "Plot twist: " / "Breaking news: " / "Fun fact: " / "Hold on to your hat: " and one closer: "Who knew?" / "Stay tuned for the sequel." / "And the crowd goes wild!" / "Truly the stuff of legends." |
| paraphrase | neutral synonyms (begin <-> start, big -> large, maybe -> perhaps, quickly -> rapidly, wants to -> would like to, tells -> informs (before a person), asks for -> requests, because -> since, also -> as well (clause end), about -> regarding (after talk/ask/think/worry verbs), ...) | one opener: "In other words, " / "Put differently, " / "Simply put, " / "To put it another way, " |

Choices among the listed openers/closers are made by a hash of (tone, text)
(sha1), so the output is a pure function of the input: no global random
state, identical across runs, machines and Python versions. After an opener
that ends in ", " the first word is lower-cased only when it is a common
function word from a fixed list (The, It, We, You, ...); names, "I" and
speaker tags (#Person1#) keep their case. Speaker tags (#Person1#, ...) are
never rewritten. A text that does not end in . ! or ? gets a "." before a
closer.

tone_score detects only the fixed markers (openers/closers above) and, for
"professional", additionally requires that no contraction remains. It does
not judge register, fluency or meaning: a system that emits only the marker
scores 1.0. The synonym rules are not counted because a rule-free rewrite can
produce the same words by chance; a "paraphrase" cannot be detected beyond its
opener. The references themselves score 1.0 by construction.
"""
import hashlib
import re

TONES = ("professional", "casual", "witty", "paraphrase")

# ---------------------------------------------------------------- helpers


def _pick(options, tone, text, salt=""):
    h = hashlib.sha1(("%s\0%s\0%s" % (tone, salt, text)).encode("utf-8")).hexdigest()
    return options[int(h[:8], 16) % len(options)]


def _match_case(src, repl):
    """Give repl the capitalisation of src (all caps, Capitalised, or as is)."""
    if len(src) > 1 and src.isupper():
        return repl.upper()
    if src[:1].isupper():
        return repl[:1].upper() + repl[1:]
    return repl


def _apply(table, text):
    """table: list of (regex, replacement) applied in order, whole words,
    case-insensitive, replacement gets the case of the matched text's first
    letter. A replacement may use \\1.. groups."""
    for pat, rep in table:
        rx = re.compile(pat, re.IGNORECASE)

        def sub(m, rep=rep):
            r = m.expand(rep)
            return _match_case(m.group(0), r)
        text = rx.sub(sub, text)
    return text


_LOWERABLE = {
    "the", "a", "an", "it", "its", "this", "that", "these", "those", "they", "we", "you", "he", "she",
    "there", "what", "when", "where", "why", "how", "who", "which", "yes", "no", "well", "my", "your",
    "our", "his", "her", "their", "do", "does", "did", "is", "are", "was", "were", "can", "could",
    "would", "will", "shall", "should", "let", "please", "sure", "ok", "okay", "so", "but", "and",
    "oh", "just", "not", "maybe", "perhaps", "if", "thank", "thanks", "both", "all", "some", "after",
    "before", "then", "now", "here", "sorry", "excuse", "good", "great", "fine", "really", "actually",
    "of", "in", "on", "at", "for", "to", "with", "as", "because", "since", "one", "two", "every", "each",
}


def _lower_first(text):
    m = re.match(r"([A-Za-z]+)(.*)", text, re.S)
    if m and m.group(1).lower() in _LOWERABLE and m.group(1) != "I":
        return m.group(1).lower() + m.group(2)
    return text


def _end(text):
    text = text.rstrip()
    if not text:
        return text
    return text if text[-1] in ".!?" or text.endswith(":)") else text + "."


def _tidy(text):
    return re.sub(r"[ \t]+", " ", text).strip()


# W = a following word (letters, or a speaker tag): contractions are only
# made when a word follows ("what it is." must not become "what it's.").
_W = r"(?=\s+(?:[A-Za-z]|#))"

# ---------------------------------------------------------------- professional

_EXPAND = [
    (r"\bI\s?'\s?m\b", "I am"),
    (r"\b(you|we|they|who|what)\s?'\s?re\b", r"\1 are"),
    (r"\b(I|you|we|they|who|could|would|should|might|must)\s?'\s?ve\b", r"\1 have"),
    (r"\b(I|you|we|they|he|she|it|that|there|who)\s?'\s?ll\b", r"\1 will"),
    (r"\b(I|you|we|they|he|she|it|that|there|who)\s?'\s?d\b", r"\1 would"),
    (r"\b(it|that|there|what|he|she|who|where|here|how)\s?'\s?s(?=\s+(?:been|got|gotten|had|done)\b)",
     r"\1 has"),
    (r"\b(it|that|there|what|he|she|who|where|here|how)\s?'\s?s\b", r"\1 is"),
    (r"\blet\s?'\s?s\b", "let us"),
]

_NT = {"won": "will not", "can": "cannot", "shan": "shall not", "ain": "is not", "don": "do not",
       "doesn": "does not", "didn": "did not", "isn": "is not", "aren": "are not", "wasn": "was not",
       "weren": "were not", "haven": "have not", "hasn": "has not", "hadn": "had not",
       "couldn": "could not", "wouldn": "would not", "shouldn": "should not", "mustn": "must not",
       "needn": "need not", "mightn": "might not"}


def _expand_nt(text):
    """don't -> do not, can't -> cannot, won't -> will not; also DialogSum's
    spaced forms ("don ' t")."""
    def sub(m):
        full = _NT.get(m.group(1).lower())
        return m.group(0) if full is None else _match_case(m.group(1), full)
    return re.sub(r"\b([A-Za-z]+n)\s?'\s?t\b", sub, text)


_PRO_WORDS = [
    (r"\ba lot of\b", "a great deal of"),
    (r"\blots of\b", "a great many"),
    (r"\bokay\b", "very well"),
    (r"\bok\b(?!\.)", "very well"),
    (r"\byeah\b", "yes"),
    (r"\byep\b", "yes"),
    (r"\bnope\b", "no"),
    (r"\bthanks\b", "thank you"),
    (r"\bkids\b(?!\s?')", "children"),
    (r"\bkid\b(?!\s?')", "child"),
    (r"\bguys\b", "everyone"),
    (r"\bbuys\b", "purchases"),
    (r"\bbuying\b", "purchasing"),
    (r"\bbought\b", "purchased"),
    (r"\bbuy\b", "purchase"),
    (r"\bneeds\b", "requires"),
    (r"\bneed\b(?=\s+(?:a|an|the|some|to|more|help|your|my|his|her|their)\b)", "require"),
    (r"\b(will|can|could|to|please|would|should|may) help\b", r"\1 assist"),
    (r"\bhelps\b(?=\s+(?:#|him|her|them|me|us|you|[A-Z]))", "assists"),
    (r"\bgets\b(?=\s+(?:a|an|the|some)\b)", "obtains"),
    (r"\bget\b(?=\s+(?:a|an|the|some)\b)", "obtain"),
    (r"\bbig\b", "substantial"),
    (r"\bstart\b(?=\s+(?:a|an|the|to)\b)", "commence"),
    (r"\bhi\b", "good day"),
    (r"\bhey\b", "good day"),
    (r"\bsorry\b", "my apologies"),
    (r"\bmaybe\b", "perhaps"),
    (r"\bcheck out\b", "examine"),
    (r"\bfind out\b", "determine"),
    (r"\btell\b(?=\s+(?:#|him|her|them|me|us|you)\b)", "inform"),
    (r"\btells\b(?=\s+(?:#|him|her|them|me|us|you|[A-Z]))", "informs"),
]

_PRO_CLOSERS = ["Kind regards.", "Best regards.", "Thank you for your attention.", "With kind regards."]


def professional(text):
    t = _tidy(text)
    t = _expand_nt(t)
    t = _apply(_EXPAND, t)
    t = _apply(_PRO_WORDS, t)
    return _tidy(_end(t) + " " + _pick(_PRO_CLOSERS, "professional", text))


# ---------------------------------------------------------------- casual

_CONTRACT = [
    (r"\bdo not" + _W, "don't"), (r"\bdoes not" + _W, "doesn't"), (r"\bdid not" + _W, "didn't"),
    (r"\bis not" + _W, "isn't"), (r"\bare not" + _W, "aren't"), (r"\bwas not" + _W, "wasn't"),
    (r"\bwere not" + _W, "weren't"), (r"\bhave not" + _W, "haven't"), (r"\bhas not" + _W, "hasn't"),
    (r"\bwill not" + _W, "won't"), (r"\bcannot\b", "can't"), (r"\bcan not\b", "can't"),
    (r"\bcould not" + _W, "couldn't"), (r"\bwould not" + _W, "wouldn't"),
    (r"\bshould not" + _W, "shouldn't"),
    (r"\bI am" + _W, "I'm"), (r"\bI will" + _W, "I'll"), (r"\bI have been\b", "I've been"),
    (r"\bI would" + _W, "I'd"),
    (r"\b(you|we|they) are" + _W, r"\1're"), (r"\b(you|we|they) will" + _W, r"\1'll"),
    (r"\b(it|that|there|what|he|she) is" + _W, r"\1's"),
    (r"\blet us\b", "let's"),
]

_CAS_WORDS = [
    (r"\bpurchases\b", "buys"), (r"\bpurchased\b", "bought"), (r"\bpurchase\b", "buy"),
    (r"\bchildren\b", "kids"), (r"\bthank you\b", "thanks"), (r"\byes\b", "yeah"),
    (r"\bvery\b", "super"), (r"\bhello\b", "hey"), (r"\bhowever\b", "but"),
    (r"\bgood morning\b", "morning"), (r"\bexcellent\b", "awesome"), (r"\bwonderful\b", "awesome"),
    (r"\brequires\b", "needs"), (r"\brequire\b", "need"), (r"\bperhaps\b", "maybe"),
    (r"\bfriends\b", "buddies"), (r"\bmoney\b", "cash"), (r"\bexpensive\b", "pricey"),
    (r"\brelax\b", "chill"), (r"\bvery well\b", "okay"),
]

_CAS_OPENERS = ["Hey! ", "Hi there! ", "Oh hey! ", "Alright! "]
_CAS_CLOSERS = ["Cheers!", "No worries.", ":)", "Catch you later!"]


def casual(text):
    t = _tidy(text)
    t = re.sub(r"\b([A-Za-z]+) ' (m|re|ve|ll|d|s|t)\b", r"\1'\2", t)  # "I ' m" -> "I'm"
    t = _apply(_CAS_WORDS, t)
    t = _apply(_CONTRACT, t)
    op = _pick(_CAS_OPENERS, "casual", text, "open")
    cl = _pick(_CAS_CLOSERS, "casual", text, "close")
    return _tidy(op + _end(t) + " " + cl)


# ---------------------------------------------------------------- witty

_WIT_WORDS = [
    (r"\bvery\b", "ridiculously"), (r"\breally\b", "seriously"), (r"\bgood\b", "splendid"),
    (r"\bgreat\b", "magnificent"), (r"\bbad\b", "dreadful"), (r"\bbig\b", "colossal"),
    (r"\bsmall\b", "teeny"), (r"\bhappy\b", "over the moon"), (r"\btired\b", "utterly pooped"),
    (r"\bangry\b", "fuming"), (r"\bworried\b", "in a tizzy"), (r"\bexpensive\b", "wallet-crushing"),
    (r"\bcheap\b", "a steal"), (r"\bbusy\b", "swamped"), (r"\bhungry\b", "starving"),
    (r"\bproblem\b", "pickle"), (r"\bproblems\b", "pickles"),
]

_WIT_OPENERS = ["Plot twist: ", "Breaking news: ", "Fun fact: ", "Hold on to your hat: "]
_WIT_CLOSERS = ["Who knew?", "Stay tuned for the sequel.", "And the crowd goes wild!",
                "Truly the stuff of legends."]


def witty(text):
    t = _tidy(text)
    t = _apply(_WIT_WORDS, t)
    op = _pick(_WIT_OPENERS, "witty", text, "open")
    cl = _pick(_WIT_CLOSERS, "witty", text, "close")
    return _tidy(op + _end(t) + " " + cl)


# ---------------------------------------------------------------- paraphrase

_PARA_WORDS = [
    (r"\bbegins\b", "starts"), (r"\bbegin\b", "start"), (r"\bbegan\b", "started"),
    (r"\bbig\b", "large"), (r"\bmaybe\b", "perhaps"), (r"\bquickly\b", "rapidly"),
    (r"\bwants to\b", "would like to"), (r"\bwant to\b(?=\s+\w)", "would like to"),
    (r"\btells\b(?=\s+(?:#|him|her|them|me|us|you|[A-Z]))", "informs"),
    (r"\basks for\b", "requests"), (r"\bbecause\b", "since"),
    (r"\balso\b(?=[.!?]\s*$)", "as well"),
    (r"\b(talk|talks|talking|ask|asks|asking|think|thinks|thinking|worry|worries|worried) about\b",
     r"\1 regarding"),
    (r"\bhelp\b(?=\s+(?:#|him|her|them|me|us|you)\b)", "aid"),
    (r"\bshows\b(?=\s+(?:#|him|her|them|me|us|you|[A-Z]))", "presents"),
    (r"\bfinally\b", "in the end"), (r"\bimmediately\b", "right away"),
]

_PARA_OPENERS = ["In other words, ", "Put differently, ", "Simply put, ", "To put it another way, "]


def paraphrase(text):
    t = _tidy(text)
    t = _apply(_PARA_WORDS, t)
    op = _pick(_PARA_OPENERS, "paraphrase", text)
    return _tidy(op + _lower_first(_end(t)))


_FUNCS = {"professional": professional, "casual": casual, "witty": witty, "paraphrase": paraphrase}


def tone(text, name):
    """Rewrite English text into the named tone (see the module table)."""
    if name not in _FUNCS:
        raise ValueError("unknown tone %r (expected one of %s)" % (name, ", ".join(TONES)))
    return _FUNCS[name](text)


# ---------------------------------------------------------------- detection

MARKERS = {
    "professional": {"closers": _PRO_CLOSERS, "openers": []},
    "casual": {"openers": [o.strip() for o in _CAS_OPENERS], "closers": _CAS_CLOSERS},
    "witty": {"openers": [o.strip() for o in _WIT_OPENERS], "closers": _WIT_CLOSERS},
    "paraphrase": {"openers": [o.strip() for o in _PARA_OPENERS], "closers": []},
}

_CONTRACTION_RX = re.compile(r"[A-Za-z]\s?'\s?(?:t|m|re|ve|ll|d)\b|\b(?:it|that|there|what|he|she|let)\s?'\s?s\b",
                             re.IGNORECASE)


def tone_markers(text, name):
    """The tone's fixed markers present in text: "open:<marker>" when the text
    starts with an opener, "close:<marker>" when it ends with a closer
    (whitespace-normalised, case-sensitive)."""
    if name not in MARKERS:
        raise ValueError("unknown tone %r" % (name,))
    t = _tidy(text or "")
    found = []
    for o in MARKERS[name]["openers"]:
        if t.startswith(o):
            found.append("open:" + o)
    for c in MARKERS[name]["closers"]:
        if t.endswith(c):
            found.append("close:" + c)
    return found


def has_contraction(text):
    return bool(_CONTRACTION_RX.search(text or ""))


def tone_score(text, name):
    """1.0 when text carries the tone's fixed marker(s), else 0.0.
    professional: ends with one of its closers and has no contraction;
    casual, witty: starts with one of its openers or ends with one of its
    closers; paraphrase: starts with one of its openers."""
    m = tone_markers(text, name)
    if not m:
        return 0.0
    if name == "professional" and has_contraction(text):
        return 0.0
    return 1.0


if __name__ == "__main__":
    import sys
    for line in sys.stdin:
        line = line.rstrip("\n")
        for n in TONES:
            print("%-12s %s" % (n, tone(line, n)))
