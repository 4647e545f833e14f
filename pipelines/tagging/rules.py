"""The tagging rules for one row (see the package docstring for the rules in words)."""
from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable

from pipelines.ingest.contract import DIMENSIONS
from pipelines.playbook import Playbook
from pipelines.tagging.lang import Token, detect, en_tokens, fold_en
from pipelines.tagging.lexicon import CUE_FAMILIES, Hit, Lexicon
from pipelines.tagging.types import MomentTags

CLAUSE_BREAK = re.compile(r"[.!?;:,。！？；：，、\n…~～|()（）\[\]【】「」『』\"“”]")
PAIR_WINDOW = 6  # words between an aspect and its opinion word (intensifiers not counted)
_DIM_ORDER = {d: i for i, d in enumerate(DIMENSIONS)}
_POL_ORDER = {"positive": 0, "negative": 1, "neutral": 2}
_FLIP = {"positive": "negative", "negative": "positive", "neutral": "neutral"}
_ZH_NUM = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10,
           "几": 2, "半": 0.5}
_EN_NUM = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
           "eight": 8, "nine": 9, "ten": 10, "several": 3, "few": 2, "couple of": 2}
_ZH_DURATION = re.compile(r"(\d+(?:\.\d+)?|[一二两三四五六七八九十几半]+)\s*(?:个)?(?:多)?(?:半)?\s*(小时|钟头|分钟)")
_EN_DURATION = re.compile(r"\b(\d+(?:\.\d+)?|an?|one|two|three|four|five|six|seven|eight|nine|ten|several|few|couple of)"
                          r"\s*\+?\s*(hours?|hrs?|minutes?|mins?)\b")


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


# --- matching ------------------------------------------------------------------------------------
def longest_leftmost(hits: list[Hit]) -> list[Hit]:
    """Non-overlapping hits: longest first, then leftmost, a cue before a stop phrase; in text order.
    Cues sharing one key (same span, e.g. a phrase listed under two dimensions) are all kept."""
    if not hits:
        return []
    occupied = bytearray(max(h.end for h in hits) + 1)
    spans: set[tuple[int, int]] = set()
    chosen: list[Hit] = []
    for hit in sorted(hits, key=lambda h: (h.start - h.end, h.start, h.family == "stop")):
        if hit.family != "stop" and (hit.start, hit.end) in spans:
            chosen.append(hit)
        elif not any(occupied[hit.start:hit.end]):
            occupied[hit.start:hit.end] = b"\x01" * (hit.end - hit.start)
            if hit.family != "stop":
                spans.add((hit.start, hit.end))
            chosen.append(hit)
    return sorted(chosen, key=lambda h: (h.start, h.end))


def _occupancy(spans: list[Hit], n: int) -> bytearray:
    occupied = bytearray(n + 1)
    for s in spans:
        occupied[s.start:s.end] = b"\x01" * (s.end - s.start)
    return occupied


class Words:
    """The words of one language in a text (jieba words for zh, tokens for en), for windows."""

    def __init__(self, text: str, tokens: list[Token], modifiers: list[Hit]):
        self.text, self.tokens = text, tokens
        self.starts = [t.start for t in tokens]
        self.ends = [t.end for t in tokens]
        self.by_start: dict[int, list[Hit]] = {}
        for m in modifiers:
            self.by_start.setdefault(m.start, []).append(m)

    def _kind(self, i: int) -> dict[str, Hit]:
        return {h.family: h for h in self.by_start.get(self.starts[i], ()) if h.end == self.ends[i] or h.family != "neg"
                or h.cue.startswith("n'")}

    def _walk(self, indices, window: int, gap):
        """(index, kinds) of the words along `indices` while they stay in the clause (`gap(i)`, the text
        between the previous position and word i, holds no clause break) and no contrast word comes;
        intensifiers do not count towards `window`."""
        counted = 0
        for i in indices:
            if counted >= window or CLAUSE_BREAK.search(self.text, *gap(i)):
                return
            kinds = self._kind(i)
            if "contrast" in kinds:
                return
            yield i, kinds
            if "int" not in kinds:
                counted += 1

    def before(self, start: int, window: int):
        """(kind, hit) of the words before `start` in its clause, nearest first, intensifiers not counted."""
        first = bisect_right(self.ends, start) - 1
        return self._walk(range(first, -1, -1), window,
                          lambda i: (self.starts[i], start if i == first else self.starts[i + 1]))

    def after(self, end: int, window: int):
        """(kind, hit) of the words after `end` in its clause, nearest first, intensifiers not counted."""
        first = bisect_left(self.starts, end)
        return self._walk(range(first, len(self.tokens)), window,
                          lambda i: (end if i == first else self.ends[i - 1], self.ends[i]))


def analyse(lexicon: Lexicon, text: str) -> tuple[dict[str, list[Hit]], dict[str, Words], list[Hit]]:
    """Cue hits per family, the words per language, and the contrast markers of a text."""
    has_zh, has_en = detect(text)
    hits: list[Hit] = []
    words: dict[str, Words] = {}
    modifiers: list[Hit] = []
    if has_zh:
        zh_hits = lexicon.scan_zh(text)
        if zh_hits:
            tokens = lexicon.segmenter.bounds(text)
            bounds = {t.start for t in tokens} | {len(text)}
            # a word made of a negator and a cue (不脏, 没等) is read as the two: split it
            negs = {(h.start, h.end) for h in zh_hits if h.family == "neg"}
            cue_spans = {(h.start, h.end) for h in zh_hits if h.family == "pzb"}
            split = []
            for t in tokens:
                cut = next((c for c in range(t.start + 1, t.end) if (t.start, c) in negs and (c, t.end) in cue_spans), None)
                if cut is None:
                    split.append(t)
                else:
                    bounds.add(cut)
                    split += [Token(text[t.start:cut], t.start, cut), Token(text[cut:t.end], cut, t.end)]
            tokens = split
            word_end = {i: t.end for t in tokens for i in range(t.start + 1, t.end)}  # inside a word -> its end
            # modifiers and one-character cues must be whole jieba words; longer cues must start on a word
            # boundary or be the tail of one word (微笑 in 面带微笑), never straddle two (排了 in 安排了)
            zh_hits = [h for h in zh_hits if h.family == "stop" or (
                h.end in bounds and (h.start in bounds or (h.family in CUE_FAMILIES and h.end - h.start > 1 and word_end.get(h.start) == h.end)))
                or (h.family in CUE_FAMILIES and h.end - h.start > 1 and h.start in bounds)]
            mods = [h for h in zh_hits if h.family in ("neg", "contrast", "int")]
            hits += [h for h in zh_hits if h.family not in ("neg", "contrast", "int")]
            words["zh"] = Words(text, tokens, mods)
            modifiers += mods
    if has_en:
        tokens = en_tokens(fold_en(text))
        en_hits = lexicon.scan_en(tokens)
        mods = [h for h in en_hits if h.family in ("neg", "contrast", "int")]
        hits += [h for h in en_hits if h.family not in ("neg", "contrast", "int")]
        words["en"] = Words(text, tokens, mods)
        modifiers += mods
    stops = [h for h in hits if h.family == "stop"]
    families = {
        family: [h for h in longest_leftmost([h for h in hits if h.family == family] + stops) if h.family == family]
        for family in CUE_FAMILIES + ("op",)
    }
    # an opinion word that is part of a PZB cue (态度好) is not an opinion on its own
    pzb_occupied = _occupancy(families["pzb"], len(text))
    families["op"] = [h for h in families["op"] if not any(pzb_occupied[h.start:h.end])]
    blocked = _occupancy([h for fam in families.values() for h in fam] + stops, len(text))
    for lang, w in words.items():  # a modifier inside a cue or stop phrase (不 in 不耐烦) does nothing
        for start, ms in list(w.by_start.items()):
            w.by_start[start] = [m for m in ms if m.family == "int" or not any(blocked[m.start:m.end])]
    contrast = [m for m in modifiers if m.family == "contrast" and not any(blocked[m.start:m.end])]
    return families, words, contrast


def _negator(hit: Hit, words: dict[str, Words], playbook: Playbook) -> str | None:
    w = words.get(hit.lang)
    if w is None:
        return None
    window = playbook.negation.window_zh if hit.lang == "zh" else playbook.negation.window_en
    for _, kinds in w.before(hit.start, window):
        if "neg" in kinds:
            return kinds["neg"].cue
    return None


def _intensifier(hit: Hit, words: dict[str, Words]) -> str | None:
    w = words.get(hit.lang)
    if w is None:
        return None
    for _, kinds in w.before(hit.start, 1):
        if "int" in kinds:
            return kinds["int"].cue
    return None


def _opinion_for(aspect: Hit, by_start: dict[int, Hit], words: dict[str, Words]) -> Hit | None:
    """The nearest opinion word in the aspect's clause (after it first, then before it)."""
    w = words.get(aspect.lang)
    if w is None or not by_start:
        return None
    best = None
    for direction, gen in ((0, w.after(aspect.end, PAIR_WINDOW)), (1, w.before(aspect.start, PAIR_WINDOW))):
        for distance, (i, _) in enumerate(gen):
            if w.starts[i] in by_start:
                if best is None or (distance, direction) < best[0]:
                    best = ((distance, direction), by_start[w.starts[i]])
                break
    return best[1] if best else None


def _zh_number(num: str) -> float:
    if num[0].isdigit():
        return float(num)
    if "十" in num:
        tens, _, ones = num.partition("十")
        return _ZH_NUM.get(tens, 1) * 10 + _ZH_NUM.get(ones, 0)
    return _ZH_NUM.get(num[0], 1)


def _durations(text: str, folded: str | None) -> list[tuple[int, int, float]]:
    out = []
    for m in _ZH_DURATION.finditer(text):
        num = m.group(1)
        value = _zh_number(num)
        if "半" in m.group(0)[len(num):]:
            value += 0.5
        out.append((m.start(), m.end(), value * (3600 if m.group(2) in ("小时", "钟头") else 60)))
    if folded is not None:
        for m in _EN_DURATION.finditer(folded):
            num = m.group(1)
            value = float(num) if num[0].isdigit() else _EN_NUM[num]
            out.append((m.start(), m.end(), value * (3600 if m.group(2).startswith("h") else 60)))
    return out


def step_cues(hits: list[Hit]) -> dict[int, tuple[int, Hit]]:
    """Per step performed (in step order): its score, the total length of its distinct cues, and its first cue."""
    cues: dict[int, dict[str, Hit]] = {}
    for h in hits:
        cues.setdefault(h.value, {}).setdefault(h.cue, h)
    return {step: (sum(h.end - h.start for h in found.values()), min(found.values(), key=lambda h: h.start))
            for step, found in sorted(cues.items())}


def primary_step(steps: dict[int, tuple[int, Hit]]) -> int:
    """The primary step of a text performing several: the highest score, a tie to the step whose cue comes first."""
    return max(steps, key=lambda s: (steps[s][0], -steps[s][1].start, -s))


# --- one row -------------------------------------------------------------------------------------
def tag(lexicon: Lexicon, touchpoint: str | None, text: str | None, bucket: str | None, text_field: str,
        moment: bool, analysis: Callable[[str], tuple] | None = None) -> MomentTags:
    """Tag one row; `moment=False` (comments) skips the MOT step and the ABC facet. `analysis`: `analyse` of the
    lexicon for a text, if the caller remembers it (the Tagger does: a text comes with many touchpoints)."""
    playbook = lexicon.playbook
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

    contrast_at = None
    if text:
        families, words, contrast = analysis(text) if analysis else analyse(lexicon, text)
        contrast_at = max((c.start for c in contrast), default=None)
        if moment and step is None and families["mot_step"] and not playbook.mot_text.customer_speech(touchpoint, rule):
            steps = step_cues(families["mot_step"])
            step, source = primary_step(steps), "text"
            for performed, (_, hit) in steps.items():
                evidence.append(_evidence(f"mot_step={performed}", f"cue:{hit.lang}:{hit.cue}", text_field,
                                          text[hit.start:hit.end], hit.start, hit.end))
        if moment and facet is None and families["abc"]:
            hit = families["abc"][0]
            facet = hit.value
            evidence.append(_evidence(f"abc={facet}", f"cue:{hit.lang}:{hit.cue}", text_field,
                                      text[hit.start:hit.end], hit.start, hit.end))
        resp_spans = []
        opinions = {o.start: o for o in families["op"]}
        breaks = [m.start() for m in CLAUSE_BREAK.finditer(text)]
        clause = lambda pos: bisect_right(breaks, pos)  # noqa: E731
        polar: dict[tuple, set] = {}
        for h in families["pzb"]:
            if h.value[1] != "neutral":
                polar.setdefault((h.lang, clause(h.start)), set()).add(h.value[0])
        for hit in families["pzb"]:
            dim, pol = hit.value
            if pol == "neutral" and polar.get((hit.lang, clause(hit.start)), set()) - {dim}:
                continue  # "the clerk was heartless": the mention is the subject of another dimension's cue
            cue_rule = f"cue:{hit.lang}:{hit.cue}"
            start, end = hit.start, hit.end
            if pol == "neutral":
                opinion = _opinion_for(hit, opinions, words)
                if opinion is not None:
                    pol = opinion.value
                    cue_rule += f"+op:{opinion.cue}"
                    start, end = min(start, opinion.start), max(end, opinion.end)
                    hit = opinion  # negation is looked up before the opinion word
            if pol != "neutral":
                intensifier = _intensifier(hit, words)
                if intensifier is not None:
                    cue_rule += f"+int:{intensifier}"
                negator = _negator(hit, words, playbook)
                if negator is not None:
                    pol, cue_rule = _FLIP[pol], f"{cue_rule}+neg:{negator}"
            if dim == "responsiveness":
                resp_spans.append((start, end))
            pzb.setdefault((dim, pol), []).append(_evidence(f"{dim}:{pol}", cue_rule, text_field, text[start:end], start, end))
        if resp_spans:
            limit = playbook.thresholds.long_wait_s
            for d_start, d_end, seconds in _durations(text, fold_en(text) if "en" in words else None):
                same_clause = any(not CLAUSE_BREAK.search(text, min(d_end, s), max(d_start, e)) for s, e in resp_spans)
                if seconds > limit and same_clause:
                    pzb.setdefault(("responsiveness", "negative"), []).append(_evidence(
                        "responsiveness:negative", f"signal:text_wait>{limit:g}", text_field, text[d_start:d_end],
                        d_start, d_end))
                    break

    keys = sorted((k for k in pzb if k[1] != "neutral" or not any((k[0], p) in pzb for p in ("positive", "negative"))),
                  key=lambda k: (_DIM_ORDER[k[0]], _POL_ORDER[k[1]]))
    considered: set[str] = set()
    late: set[str] = set()
    for key in keys:
        seen = set()
        for ev in pzb[key]:
            if ev["rule"] not in seen:
                seen.add(ev["rule"])
                evidence.append(ev)
                if key[1] != "neutral":
                    considered.add(key[1])
                    if contrast_at is None or ev["start"] is None or ev["start"] > contrast_at:
                        late.add(key[1])
    pols = late or considered  # after a contrast marker (但是, but), the later clause decides
    polarity = "negative" if "negative" in pols else "positive" if "positive" in pols else "neutral"
    steps = sorted({int(e["tag"].split("=")[1]) for e in evidence if e["tag"].startswith("mot_step=")})
    return MomentTags(step, source, facet, [{"dimension": d, "polarity": p} for d, p in keys], polarity, evidence, steps)
