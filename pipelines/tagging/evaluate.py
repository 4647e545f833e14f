"""`motpipe eval-tagging`: precision, recall and F1 of the tagger against gold JSON Lines.

Gold records: {"id", "lang", "text", "labels": [{"dimension", "polarity"}]} for PZB, and/or
{"mot_step": 1..5} for staff utterances (then the record is tagged as an event with no touchpoint and
its MOT step is scored too). Counts are per document: a dimension is predicted when any tag of the
text has it.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

from pipelines.ingest.contract import DIMENSIONS
from pipelines.tagging.tagger import Tagger


def read_gold(paths: list[str | Path]) -> list[dict]:
    records = []
    for path in paths:
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                record = json.loads(line)
                if "text" not in record:
                    raise ValueError(f"{path}:{n}: gold record without text")
                record.setdefault("id", f"{Path(path).name}:{n}")
                records.append(record)
    return records


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": round(p, 4), "recall": round(r, 4),
            "f1": round(2 * tp / (2 * tp + fp + fn), 4) if tp else 0.0}


def _scores(counts: dict[str, list[int]], classes: list) -> dict:
    per = {(":".join(c) if isinstance(c, tuple) else str(c)): _prf(*counts[c]) for c in classes}
    tp, fp, fn = (sum(counts[c][i] for c in classes) for i in range(3))
    return {"per_class": per, "micro": _prf(tp, fp, fn),
            "macro_f1": round(sum(v["f1"] for v in per.values()) / len(per), 4) if per else None}


def evaluate(tagger: Tagger, records: list[dict], top: int = 10) -> dict:
    """The report: per language, PZB dimension-only and dimension+polarity scores, MOT-step scores,
    and the most frequent false positives / negatives with their evidence."""
    by_lang: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_lang[r.get("lang") or "unknown"].append(r)
    report = {"records": len(records), "languages": {}}
    for lang, recs in sorted(by_lang.items()):
        pzb_recs = [r for r in recs if "labels" in r]
        step_recs = [r for r in recs if r.get("mot_step") is not None]
        out: dict = {"records": len(recs)}
        dims = [d for d in DIMENSIONS if any(lb["dimension"] == d for r in pzb_recs for lb in r["labels"])]
        pairs = sorted({(lb["dimension"], lb["polarity"]) for r in pzb_recs for lb in r["labels"]},
                       key=lambda k: (DIMENSIONS.index(k[0]), k[1]))
        c_dim = {d: [0, 0, 0] for d in dims}
        c_pair = {p: [0, 0, 0] for p in pairs}
        c_step = {s: [0, 0, 0] for s in range(1, 6)}
        fps, fns = Counter(), Counter()
        examples: dict[tuple, dict] = {}
        for r in recs:
            moment = r.get("mot_step") is not None
            tags = tagger.tag_moment(None, r["text"], None) if moment else tagger.tag_comment(r["text"])
            if "labels" in r:
                gold = {lb["dimension"] for lb in r["labels"]}
                gold_pairs = {(lb["dimension"], lb["polarity"]) for lb in r["labels"]}
                pred = {t["dimension"] for t in tags.pzb_tags}
                pred_pairs = {(t["dimension"], t["polarity"]) for t in tags.pzb_tags}
                for d in dims:
                    _count(c_dim[d], d in gold, d in pred)
                    if d in pred and d not in gold:
                        for e in tags.evidence:
                            if e["tag"].split(":")[0] == d:
                                key = ("fp", d, e["rule"])
                                fps[key[1:]] += 1
                                examples.setdefault(key, {"id": r["id"], "text": r["text"][:160], "span": e["span"]})
                    if d in gold and d not in pred:
                        fns[(d, "")] += 1
                        examples.setdefault(("fn", d, 0), {"id": r["id"], "text": r["text"][:160],
                                                           "predicted_rules": [e["rule"] for e in tags.evidence]})
                for p in pairs:
                    _count(c_pair[p], p in gold_pairs, p in pred_pairs)
            if moment:
                for s in c_step:
                    _count(c_step[s], r["mot_step"] == s, tags.mot_step == s)
                if tags.mot_step != r["mot_step"]:
                    rule = next((e["rule"] for e in tags.evidence if e["tag"].startswith("mot_step")), "no cue")
                    fps[("mot_step", f"gold {r['mot_step']} -> {tags.mot_step}: {rule}")] += 1
                    examples.setdefault(("fp", "mot_step", f"gold {r['mot_step']} -> {tags.mot_step}: {rule}"),
                                        {"id": r["id"], "text": r["text"][:160]})
        if pzb_recs and dims:
            out["pzb_records"] = len(pzb_recs)
            out["dimension"] = _scores(c_dim, dims)
            out["dimension_polarity"] = _scores(c_pair, pairs)
        if step_recs:
            out["mot_step_records"] = len(step_recs)
            out["mot_step"] = _scores(c_step, [s for s in c_step if sum(c_step[s])])
        out["false_positives"] = [{"dimension": k[0], "rule": k[1], "count": n, "example": examples.get(("fp",) + k)}
                                  for k, n in fps.most_common(top)]
        out["false_negatives"] = [{"dimension": k[0], "count": n, "example": examples.get(("fn", k[0], 0))}
                                  for k, n in fns.most_common(top)]
        report["languages"][lang] = out
    sources = sorted({r.get("source") or "unknown" for r in records})
    if len(sources) > 1:  # the same report per source (without the error lists)
        report["sources"] = {src: evaluate(tagger, [r for r in records if (r.get("source") or "unknown") == src], 0)
                             ["languages"] for src in sources}
    return report


HALVES = ("tuning", "held-out")


def half_of(record_id: str) -> str:
    """'tuning' or 'held-out': the first 8 hex digits of sha256(id) / 2^32 below 0.5 is the tuning half (the
    split docs/tagging.md has used for the English dev file since base@1.2.0)."""
    return HALVES[int(hashlib.sha256(record_id.encode("utf-8")).hexdigest()[:8], 16) >= 2 ** 31]


def split_half(records: list[dict], half: str) -> list[dict]:
    """The records of one half ('tuning', 'held-out'), or all of them ('all')."""
    if half == "all":
        return records
    if half not in HALVES:
        raise ValueError(f"half must be one of all, {', '.join(HALVES)}; got {half!r}")
    return [r for r in records if half_of(r["id"]) == half]


def _count(cell: list[int], gold: bool, pred: bool) -> None:
    if gold and pred:
        cell[0] += 1
    elif pred:
        cell[1] += 1
    elif gold:
        cell[2] += 1
