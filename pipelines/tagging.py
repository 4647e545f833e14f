"""Tag touchpoint events and feedback comments with MOT step, ABC facet and PZB dimensions.

    >>> from pipelines.playbook import load_playbook
    >>> tagger = Tagger(load_playbook("bank_branch"))
    >>> tagger.tag_moment(None, "柜员服务不专业", None).pzb_tags
    [{'dimension': 'assurance', 'polarity': 'negative'}]

Rules (every tag carries at least one `evidence` entry that explains it):

* MOT step: the playbook's touchpoint map first (`mot_step_source="touchpoint"`); when the
  touchpoint is unmapped or has no step, the text's step cues (`"text"`). Several step cues: the
  earliest in the text wins, a tie (same span) goes to the lower step.
* ABC facet: the touchpoint's `abc`, else the earliest ABC cue in the text.
* PZB: the touchpoint's default dimensions are `neutral`; `wait_s > long_wait_s` is
  responsiveness negative and `wait_s <= short_wait_s` (when set) responsiveness positive; text
  cues give their dimension and polarity. A neutral tag is dropped when the same dimension also has
  a positive or negative tag. Positive and negative tags of one dimension can coexist (mixed
  reviews); the overall `polarity` is negative if any tag is, else positive if any tag is.
* Matching: one pyahocorasick automaton per language holds every cue, the zh negators and a few
  stop phrases. Chinese cues are plain substrings. English cues match on the lower-cased text
  (curly apostrophes folded to ') on word boundaries, with no stemming: only listed inflections
  match ("rude" never matches "prudent"). Each family (step, PZB, ABC) keeps its longest
  matches first, then the leftmost, without overlaps; stop phrases (`STOP_PHRASES`, e.g. 特别,
  不错, "not only", "kind of") take part in that contest but tag nothing, so the 别 in 特别 or the
  不 in 不错 is not read as a negator. Families do not compete: 抱歉让您久等了 is a step-1 cue and,
  through 让您久等了, an empathy-positive cue (the longer PZB match hides the 久等 inside it).
* Negation: a negator within `window_zh` characters (zh) or `window_en` words (en) before a PZB
  cue, in the same clause (no punctuation in between) and not itself inside a matched cue or stop
  phrase, flips positive <-> negative; neutral stays neutral. The rule then reads
  `cue:zh:专业+neg:不`. A cue that contains its negation (不耐烦, "not helpful", "didn't care") is
  matched whole, so its own negator is inside the span and it is never flipped again. English
  negators are single words; an entry starting with "n'" ("n't") matches as a word suffix.
* Evidence: `tag` is `mot_step=<n>`, `<dimension>:<polarity>` or `abc=<facet>`; `rule` is
  `touchpoint:<code>`, `signal:wait_s><threshold>`, `signal:wait_s<=<threshold>` or
  `cue:<lang>:<cue>[+neg:<negator>]`; text evidence has the matched span and its character
  offsets (`text[start:end] == span`). One entry per (tag, rule): a cue repeated in a text is
  reported at its first occurrence. Evidence of a dropped neutral tag is dropped with it.
* Rows: empty or blank text counts as no text. `tag_events`/`tag_feedback` tag each distinct
  (touchpoint, text, wait bucket) once per batch and gather with `Array.take`; rows without text
  are cached across batches by (touchpoint, wait bucket).

Lexicon check (tests/test_tagging.py, document-level macro-F1 over the labelled dimensions,
polarity ignored, on ../shared/data/text): zh Dianping reviews with `base` 0.910, en airline tweets
with `airline` 0.465 (keyword baseline 0.849 / 0.413; English precision is a lower bound, see the
data README).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import ahocorasick
import pyarrow as pa

from pipelines.contract import DIMENSIONS, MOT_STEPS
from pipelines.playbook import Playbook
from schemas.tables import EVIDENCE, PZB_TAG

# Phrases in which a negator character does not negate (or a cue word is not a cue); they tag nothing.
STOP_PHRASES = {
    "zh": ["不错", "不过", "不少", "不仅", "不但", "不管", "不久", "不断", "不停", "不禁", "不得不", "差不多",
           "不一会", "没想到", "忍不住", "了不起", "不好意思", "不用说", "少不了", "特别", "别人", "别的", "别说",
           "分别", "区别", "级别", "无论", "无比", "无线", "慢慢", "慢工", "没关系", "没问题", "未来"],
    "en": ["not only", "not just", "no doubt", "no matter", "never mind", "no wonder", "if not",
           "kind of", "can't wait", "cant wait", "no problem", "not sure", "whether or not"],
}
_FAMILIES = ("mot_step", "pzb", "abc")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")
_CLAUSE_BREAK = re.compile(r"[.!?;:,。！？；：，、\n]")
_DIM_ORDER = {d: i for i, d in enumerate(DIMENSIONS)}
_POL_ORDER = {"positive": 0, "negative": 1, "neutral": 2}
_FLIP = {"positive": "negative", "negative": "positive", "neutral": "neutral"}


@dataclass(frozen=True)
class MomentTags:
    """Tags of one event or comment; `evidence` rows follow schemas.tables.EVIDENCE."""

    mot_step: int | None = None
    mot_step_source: str | None = None
    abc_facet: str | None = None
    pzb_tags: list[dict] = field(default_factory=list)
    polarity: str = "neutral"
    evidence: list[dict] = field(default_factory=list)


class Hit(NamedTuple):
    start: int
    end: int
    lang: str
    cue: str  # as written in the playbook
    family: str  # mot_step | pzb | abc | neg | stop
    value: object  # step number, (dimension, polarity), facet, or None


# --- compiling -----------------------------------------------------------------------------------
def fold_en(text: str) -> str:
    """Lower-case without changing offsets; curly apostrophes become '."""
    lowered = text.lower()
    if len(lowered) != len(text):  # a few characters lower-case to two (İ): keep those as they are
        lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    return lowered.replace("\u2019", "'").replace("\u2018", "'")


def lexicon_entries(playbook: Playbook) -> list[tuple[str, str, str, object]]:
    """(lang, cue, family, value) for every cue, zh negator and stop phrase of a playbook."""
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
        entries += [(lang, c, "stop", None) for c in STOP_PHRASES[lang]]
    entries += [("zh", c, "neg", None) for c in playbook.negation.zh]
    return entries


def build_automatons(playbook: Playbook) -> dict[str, ahocorasick.Automaton]:
    """One automaton per language; each key maps to all (cue, family, value) that share it."""
    keyed: dict[tuple[str, str], list] = {}
    for lang, cue, family, value in lexicon_entries(playbook):
        key = fold_en(cue.strip()) if lang == "en" else cue.strip()
        if key and (cue, family, value) not in keyed.setdefault((lang, key), []):
            keyed[(lang, key)].append((cue, family, value))
    automatons = {}
    for lang in ("zh", "en"):
        automaton = ahocorasick.Automaton()
        for (key_lang, key), payload in keyed.items():
            if key_lang == lang:
                automaton.add_word(key, (len(key), tuple(payload)))
        automaton.make_automaton()
        automatons[lang] = automaton
    return automatons


# --- matching ------------------------------------------------------------------------------------
def _is_word_char(ch: str) -> bool:
    return ch.isascii() and (ch.isalnum() or ch == "_")


def scan(automatons: dict, text: str) -> list[Hit]:
    """All raw hits of both languages; English ones only on word boundaries."""
    hits = []
    folded = fold_en(text)
    for lang, haystack in (("zh", text), ("en", folded)):
        if not len(automatons[lang]):
            continue
        for last, (length, payload) in automatons[lang].iter(haystack):
            start, end = last - length + 1, last + 1
            if lang == "en" and (
                (start > 0 and _is_word_char(haystack[start - 1]) and _is_word_char(haystack[start]))
                or (end < len(haystack) and _is_word_char(haystack[end]) and _is_word_char(haystack[end - 1]))
            ):
                continue
            hits += [Hit(start, end, lang, cue, family, value) for cue, family, value in payload]
    return hits


def longest_leftmost(hits: list[Hit]) -> list[Hit]:
    """Non-overlapping hits: longest first, then leftmost, a cue before a stop phrase; in text order."""
    chosen: list[Hit] = []
    for hit in sorted(hits, key=lambda h: (h.start - h.end, h.start, h.family == "stop")):
        # cues sharing one key (same span) are all kept: e.g. a phrase listed under two dimensions
        same_cue = lambda c: (hit.start, hit.end) == (c.start, c.end) and c.family != "stop"  # noqa: E731
        if all(hit.end <= c.start or hit.start >= c.end or same_cue(c) for c in chosen):
            chosen.append(hit)
    return sorted(chosen, key=lambda h: (h.start, h.end))


def resolve(hits: list[Hit]) -> dict[str, list[Hit]]:
    """Per family, the non-overlapping matches (stop phrases compete in every family, tag nothing)."""
    stops = [h for h in hits if h.family == "stop"]
    return {
        family: [h for h in longest_leftmost([h for h in hits if h.family == family] + stops) if h.family == family]
        for family in _FAMILIES
    }


def _covered(start: int, end: int, spans: list[Hit]) -> bool:
    return any(start < s.end and s.start < end for s in spans)


def find_negator(hit: Hit, text: str, folded: str, negators: list[Hit], blocked: list[Hit], playbook: Playbook) -> str | None:
    """The negator that flips `hit`, if any (see the module docstring)."""
    neg = playbook.negation
    if hit.lang == "zh":
        lo = hit.start - neg.window_zh
        candidates = [n for n in negators if n.start >= lo and n.end <= hit.start
                      and not _CLAUSE_BREAK.search(text, n.end, hit.start) and not _covered(n.start, n.end, blocked)]
        if not candidates:
            return None
        return max(candidates, key=lambda n: (n.end, n.end - n.start)).cue
    words = set(w.lower() for w in neg.en if not w.startswith("n'"))
    suffixes = [w.lower() for w in neg.en if w.startswith("n'")]
    tokens = [m for m in _WORD.finditer(folded, 0, hit.start)][-neg.window_en:] if neg.window_en else []
    for token in reversed(tokens):
        if _CLAUSE_BREAK.search(folded, token.end(), hit.start):
            break
        if _covered(token.start(), token.end(), blocked):
            continue
        word = token.group()
        if word in words:
            return next(w for w in neg.en if w.lower() == word)
        for suffix in suffixes:
            if word.endswith(suffix):
                return suffix
    return None


# --- tagging -------------------------------------------------------------------------------------
def _evidence(tag: str, rule: str, field_: str, span: str | None = None, start: int | None = None,
              end: int | None = None) -> dict:
    return {"tag": tag, "rule": rule, "field": field_, "span": span, "start": start, "end": end}


def wait_bucket(wait_s: float | None, playbook: Playbook) -> str | None:
    """'long', 'short' or None: all that the tagger needs to know about a wait."""
    if wait_s is None or (isinstance(wait_s, float) and math.isnan(wait_s)):
        return None
    thresholds = playbook.thresholds
    if wait_s > thresholds.long_wait_s:
        return "long"
    if thresholds.short_wait_s is not None and wait_s <= thresholds.short_wait_s:
        return "short"
    return None


def tag(playbook: Playbook, automatons: dict, touchpoint: str | None, text: str | None,
        bucket: str | None, text_field: str, moment: bool) -> MomentTags:
    """Tag one row; `moment=False` (comments) skips the MOT step and the ABC facet."""
    rule = playbook.touchpoints.get(touchpoint) if touchpoint is not None else None
    evidence: list[dict] = []
    pzb: dict[tuple[str, str], list[dict]] = {}
    step = source = facet = None

    if rule is not None:
        tp_rule = f"touchpoint:{touchpoint}"
        if moment and rule.mot_step is not None:
            step, source = rule.mot_step, "touchpoint"
            evidence.append(_evidence(f"mot_step={step}", tp_rule, "touchpoint"))
        if moment and rule.abc is not None:
            facet = rule.abc
            evidence.append(_evidence(f"abc={facet}", tp_rule, "touchpoint"))
        for dim in rule.dimensions:
            pzb.setdefault((dim, "neutral"), []).append(_evidence(f"{dim}:neutral", tp_rule, "touchpoint"))
    if bucket == "long":
        pzb.setdefault(("responsiveness", "negative"), []).append(_evidence(
            "responsiveness:negative", f"signal:wait_s>{playbook.thresholds.long_wait_s:g}", "wait_s"))
    elif bucket == "short":
        pzb.setdefault(("responsiveness", "positive"), []).append(_evidence(
            "responsiveness:positive", f"signal:wait_s<={playbook.thresholds.short_wait_s:g}", "wait_s"))

    if text:
        hits = scan(automatons, text)
        families = resolve(hits)
        if moment and step is None and families["mot_step"]:
            hit = min(families["mot_step"], key=lambda h: (h.start, h.value))
            step, source = hit.value, "text"
            evidence.append(_evidence(f"mot_step={step}", f"cue:{hit.lang}:{hit.cue}", text_field,
                                      text[hit.start:hit.end], hit.start, hit.end))
        if moment and facet is None and families["abc"]:
            hit = families["abc"][0]
            facet = hit.value
            evidence.append(_evidence(f"abc={facet}", f"cue:{hit.lang}:{hit.cue}", text_field,
                                      text[hit.start:hit.end], hit.start, hit.end))
        if families["pzb"]:
            folded = fold_en(text)
            negators = [h for h in hits if h.family == "neg"]
            blocked = [h for fam in families.values() for h in fam] + [h for h in hits if h.family == "stop"]
            for hit in families["pzb"]:
                dim, pol = hit.value
                cue_rule = f"cue:{hit.lang}:{hit.cue}"
                negator = find_negator(hit, text, folded, negators, blocked, playbook) if pol != "neutral" else None
                if negator is not None:
                    pol, cue_rule = _FLIP[pol], f"{cue_rule}+neg:{negator}"
                pzb.setdefault((dim, pol), []).append(_evidence(
                    f"{dim}:{pol}", cue_rule, text_field, text[hit.start:hit.end], hit.start, hit.end))

    keys = sorted((k for k in pzb if k[1] != "neutral" or not any((k[0], p) in pzb for p in ("positive", "negative"))),
                  key=lambda k: (_DIM_ORDER[k[0]], _POL_ORDER[k[1]]))
    for key in keys:
        seen = set()
        for ev in pzb[key]:
            if ev["rule"] not in seen:
                seen.add(ev["rule"])
                evidence.append(ev)
    polarities = {k[1] for k in keys}
    polarity = "negative" if "negative" in polarities else "positive" if "positive" in polarities else "neutral"
    return MomentTags(step, source, facet, [{"dimension": d, "polarity": p} for d, p in keys], polarity, evidence)


def _clean_text(value: str | None) -> str | None:
    return value if value and value.strip() else None


class Tagger:
    """A playbook compiled for tagging; build once per worker and reuse across batches."""

    def __init__(self, playbook: Playbook):
        self.playbook = playbook
        self.automatons = build_automatons(playbook)
        self._no_text: dict[tuple, MomentTags] = {}  # rows without text: (touchpoint, bucket) -> tags

    def tag_moment(self, touchpoint: str | None, text: str | None, wait_s: float | None) -> MomentTags:
        """Tags of one touchpoint event."""
        return self._moment(touchpoint, _clean_text(text), wait_bucket(wait_s, self.playbook))

    def tag_comment(self, text: str | None) -> MomentTags:
        """PZB tags and polarity of a feedback comment (no MOT step, no ABC facet)."""
        return tag(self.playbook, self.automatons, None, _clean_text(text), None, "comment", moment=False)

    def _moment(self, touchpoint: str | None, text: str | None, bucket: str | None) -> MomentTags:
        if text is not None:
            return tag(self.playbook, self.automatons, touchpoint, text, bucket, "text", moment=True)
        key = (touchpoint, bucket)
        if key not in self._no_text:
            if len(self._no_text) >= 4096:
                self._no_text.clear()
            self._no_text[key] = tag(self.playbook, self.automatons, touchpoint, None, bucket, "text", moment=True)
        return self._no_text[key]

    def tag_events(self, table: pa.Table) -> dict[str, pa.Array]:
        """Tag columns for an events batch (reads touchpoint, text, wait_s; a missing column counts as null)."""
        n = table.num_rows
        touchpoints, texts, waits = (table.column(c).to_pylist() if c in table.column_names else [None] * n
                                     for c in ("touchpoint", "text", "wait_s"))
        keys = [(tp, _clean_text(tx), wait_bucket(w, self.playbook)) for tp, tx, w in zip(touchpoints, texts, waits)]
        unique, index = _dedupe(keys)
        tags = [self._moment(*key) for key in unique]
        take = pa.array(index, pa.int32())
        steps = [t.mot_step for t in tags]
        return {
            "mot_step": pa.array(steps, pa.int8()).take(take),
            "mot_step_name": pa.array([MOT_STEPS[s][0] if s else None for s in steps], pa.string()).take(take),
            "mot_step_source": pa.array([t.mot_step_source for t in tags], pa.string()).take(take),
            "abc_facet": pa.array([t.abc_facet for t in tags], pa.string()).take(take),
            **_common_columns(tags, take),
        }

    def tag_feedback(self, table: pa.Table) -> dict[str, pa.Array]:
        """Tag columns (pzb_tags, polarity, evidence) for a feedback batch (reads comment)."""
        comments = table.column("comment").to_pylist() if "comment" in table.column_names else [None] * table.num_rows
        unique, index = _dedupe([_clean_text(c) for c in comments])
        tags = [self.tag_comment(c) for c in unique]
        return _common_columns(tags, pa.array(index, pa.int32()))


def _dedupe(keys: list) -> tuple[list, list[int]]:
    """Distinct keys in first-seen order and, per row, the index of its key."""
    positions: dict = {}
    index = [positions.setdefault(k, len(positions)) for k in keys]
    return list(positions), index


def _common_columns(tags: list[MomentTags], take: pa.Array) -> dict[str, pa.Array]:
    return {
        "pzb_tags": pa.array([t.pzb_tags for t in tags], pa.list_(PZB_TAG)).take(take),
        "polarity": pa.array([t.polarity for t in tags], pa.string()).take(take),
        "evidence": pa.array([t.evidence for t in tags], pa.list_(EVIDENCE)).take(take),
    }
