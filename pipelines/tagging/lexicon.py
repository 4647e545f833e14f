"""A playbook's lexicon compiled for matching: one Aho-Corasick automaton per language, built once
per Tagger (that is, once per Beam worker)."""
from __future__ import annotations

from typing import NamedTuple

import ahocorasick

from pipelines.playbook import Playbook
from pipelines.tagging.lang import Segmenter, en_key, en_variants

# Phrases in which a negator or cue word does not do its job; they tag nothing (see `resolve`).
STOP_PHRASES = {
    "zh": ["不错", "不少", "不仅", "不但", "不管", "不久", "不断", "不停", "不禁", "不得不", "差不多",
           "不一会", "没想到", "忍不住", "了不起", "不好意思", "不用说", "少不了", "特别", "别人", "别的", "别说",
           "分别", "区别", "级别", "无论", "无比", "无线", "慢慢", "慢工", "没关系", "没问题", "未来"],
    "en": ["not only", "not just", "no doubt", "no matter", "never mind", "no wonder", "if not",
           "kind of", "can't wait", "cant wait", "no problem", "not sure", "whether or not", "no worries",
           "couldn't be more", "could not be more", "couldnt be more", "can't be more", "cannot be more"],
}
CUE_FAMILIES = ("mot_step", "pzb", "abc")


class Hit(NamedTuple):
    start: int
    end: int
    lang: str
    cue: str  # as written in the lexicon
    family: str  # mot_step | pzb | abc | op | neg | contrast | int | stop
    value: object  # step, (dimension, polarity), facet, polarity (op) or None


def lexicon_entries(playbook: Playbook) -> list[tuple[str, str, str, object]]:
    """(lang, cue, family, value) for every cue and modifier of a playbook."""
    cues = playbook.cues
    entries = []
    for lang in ("zh", "en"):
        entries += [(lang, c, "mot_step", step) for step, lc in cues.mot_step.items() for c in getattr(lc, lang)]
        entries += [
            (lang, c, "pzb", (dim, pol))
            for dim, pc in cues.pzb.items()
            for pol in ("positive", "negative", "neutral")
            for c in getattr(getattr(pc, pol), lang)
        ]
        entries += [(lang, c, "abc", facet) for facet, lc in cues.abc.items() for c in getattr(lc, lang)]
        entries += [(lang, c, "op", pol) for pol in ("positive", "negative", "neutral")
                    for c in getattr(getattr(playbook.opinion, pol), lang)]
        entries += [(lang, c, "neg", None) for c in getattr(playbook.negation, lang)]
        entries += [(lang, c, "contrast", None) for c in getattr(playbook.contrast, lang)]
        entries += [(lang, c, "int", None) for c in getattr(playbook.intensifiers, lang)]
        entries += [(lang, c, "stop", None) for c in STOP_PHRASES[lang]]
    return entries


class Lexicon:
    """Compiled automatons: zh on the raw text, en on the space-joined folded tokens."""

    def __init__(self, playbook: Playbook):
        self.playbook = playbook
        keyed: dict[tuple[str, str], list] = {}
        variants: list[tuple[str, tuple]] = []
        for lang, cue, family, value in lexicon_entries(playbook):
            key = en_key(cue) if lang == "en" else cue.strip()
            if not key:
                continue
            payload = (cue, family, value)
            if payload not in keyed.setdefault((lang, key), []):
                keyed[(lang, key)].append(payload)
            if lang == "en" and family in CUE_FAMILIES + ("op",):
                variants += [(v, payload) for v in en_variants(key)]
        listed = set(keyed)
        for key, payload in variants:  # an inflection never overrides a form that is listed itself
            if ("en", key) not in listed and payload not in keyed.setdefault(("en", key), []):
                keyed[("en", key)].append(payload)
        self.automatons = {}
        for lang in ("zh", "en"):
            automaton = ahocorasick.Automaton()
            for (key_lang, key), payload in keyed.items():
                if key_lang == lang:
                    automaton.add_word(key, (len(key), tuple(payload)))
            automaton.make_automaton()
            self.automatons[lang] = automaton
        self.segmenter = Segmenter([cue for (lang, cue), _ in keyed.items() if lang == "zh"])
        neg = playbook.negation
        self.en_neg_suffixes = tuple(w.lower() for w in neg.en if w.startswith("n'"))

    def scan_zh(self, text: str) -> list[Hit]:
        automaton = self.automatons["zh"]
        if not len(automaton):
            return []
        hits = []
        for last, (length, payload) in automaton.iter(text):
            start = last - length + 1
            hits += [Hit(start, last + 1, "zh", cue, family, value) for cue, family, value in payload]
        return hits

    def scan_en(self, tokens) -> list[Hit]:
        """Hits on whole tokens; offsets are those of the first and last token in the text."""
        automaton = self.automatons["en"]
        if not tokens or not len(automaton):
            return []
        joined = " ".join(t.text for t in tokens)
        starts = {}  # character offset in `joined` -> token index
        pos = 0
        for i, t in enumerate(tokens):
            starts[pos] = i
            pos += len(t.text) + 1
        hits = []
        for last, (length, payload) in automaton.iter(joined):
            start = last - length + 1
            if start not in starts or not (last + 1 == len(joined) or joined[last + 1] == " "):
                continue
            first = starts[start]
            last_token = first + payload_len(joined, start, last)
            hits += [Hit(tokens[first].start, tokens[last_token].end, "en", cue, family, value)
                     for cue, family, value in payload]
        suffixes = self.en_neg_suffixes
        if suffixes:
            hits += [Hit(t.start, t.end, "en", s, "neg", None) for t in tokens for s in suffixes
                     if t.text.endswith(s) and t.text != s]
        return hits


def payload_len(joined: str, start: int, last: int) -> int:
    """Number of token boundaries inside joined[start:last+1]."""
    return joined.count(" ", start, last + 1)
