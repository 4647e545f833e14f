"""`motpipe eval-tagging`: precision, recall and F1 of the tagger against gold JSON Lines.

Gold records: {"id", "lang", "text", "labels": [{"dimension", "polarity"}]} for PZB, and/or
{"mot_step": 1..5} or {"mot_steps": [1..5, ...]} for staff utterances (then the record is tagged as an event
with no touchpoint and its MOT steps are scored too). Counts are per document: a dimension is predicted when
any tag of the text has it. `lang` defaults to the detected language of the text, `source` to the file name.

MOT steps are scored twice: the primary `mot_step` (a step counts as predicted only when it is the primary
one, and `primary_in_gold` is the share of records whose primary step is one of the gold steps) and the set
`mot_steps` (every step predicted against every gold step, multi-label). `mot_step_confusion` counts, per gold
step of a record, the predicted primary step (`none` when there is none).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from pathlib import Path

from pipelines.ingest.contract import DIMENSIONS
from pipelines.tagging.folds import held_out_groups
from pipelines.tagging.lang import detect
from pipelines.tagging.tagger import Tagger

STEPS = (1, 2, 3, 4, 5)
HELD_OUT_SHARE = 0.25  # of the records, in whole groups (folds.held_out_groups)


def read_gold(paths: list[str | Path]) -> list[dict]:
    records = []
    for path in paths:
        for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                record = json.loads(line)
                if "text" not in record:
                    raise ValueError(f"{path}:{n}: gold record without text")
                record.setdefault("id", f"{Path(path).name}:{n}")
                record.setdefault("source", Path(path).name)
                if not record.get("lang"):
                    has_zh, has_en = detect(record["text"] or "")
                    record["lang"] = "mixed" if has_zh and has_en else "zh" if has_zh else "en" if has_en else "unknown"
                steps = gold_steps(record)
                if steps is not None and (not steps or not steps <= set(STEPS)):
                    raise ValueError(f"{path}:{n}: MOT steps must be 1..5, got {sorted(steps)}")
                records.append(record)
    return records


def select(records: list[dict], certain_only: bool = False, split: str = "all", group_by: str = "company") -> list[dict]:
    """The records to score: without those marked `uncertain` when `certain_only`; `split` "dev" or "held-out"
    keeps the groups (`group_by`) outside / inside the held-out set, chosen on all records before any filter."""
    if split not in ("all", "dev", "held-out"):
        raise ValueError(f"--split must be all, dev or held-out, got {split!r}")
    if split != "all":
        if any(group_by not in r for r in records):
            raise ValueError(f"--split {split} needs the field {group_by!r} in every gold record")
        held = held_out_groups([str(r[group_by]) for r in records], HELD_OUT_SHARE)
        records = [r for r in records if (str(r[group_by]) in held) == (split == "held-out")]
    return [r for r in records if not (certain_only and r.get("uncertain"))]


def run_redaction(out: str, pseudonymize_key: str | None = None):
    """How the latest run of `out` (its summary in `OUT/_runs`) replaced ids in which PII is found: with its
    playbook's phone regions and its key (the `--pseudonymize-key`, which a pseudonymised run needs given again,
    else the output's key file in its restricted directory). None when ids were taken as given: an output without
    a summary and without `OUT/_restricted/_keys/identifiers.key`."""
    from pipelines.config import restricted_dir
    from pipelines.pii import Redaction
    from pipelines.pipeline import read_identifier_key
    from pipelines.playbook import load_playbook
    from pipelines.quality.checkpoint import CheckError, read_summary

    try:
        settings = read_summary(out)["settings"]
    except CheckError:
        settings = {}
    if settings.get("pseudonymized") and not pseudonymize_key:
        raise ValueError(f"the run of {out} pseudonymised its ids: give its --pseudonymize-key")
    if pseudonymize_key and not settings.get("pseudonymized"):
        raise ValueError(f"the run of {out} did not pseudonymise its ids: leave out --pseudonymize-key")
    playbook = settings.get("playbook", "base")
    try:
        regions = load_playbook(playbook).phone_regions
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot load the playbook of the run of {out} ({playbook}): {error}") from None
    if pseudonymize_key:
        return Redaction(regions, identifier_key=pseudonymize_key.encode("utf-8"))
    restricted = restricted_dir(out, settings.get("restricted_out"))
    key = read_identifier_key(restricted)
    if key is None:
        if settings:
            raise ValueError(f"no identifier key in {restricted}: the output's restricted directory has moved or "
                             "lost its key, so ids hashed as PII cannot be matched")
        return None
    return Redaction(regions, identifier_key=bytes.fromhex(key))


def published_ids(out: str, ids: list[str], pseudonymize_key: str | None = None) -> dict[str, str]:
    """Each id as the output's events carry it: an id in which PII is found (a card-like number, say) was replaced
    by its keyed hash (`run_redaction`)."""
    redaction = run_redaction(out, pseudonymize_key)
    return {i: redaction.identifier(i) if redaction else i for i in ids}


def events_report(out: str, records: list[dict], pseudonymize_key: str | None = None) -> dict:
    """MOT-step scores of a `motpipe run` output's events against the gold records (id = event_id, as published:
    see `published_ids`); a gold record without its event is an error. Events of schema 1.0 (no `mot_steps`)
    count their `mot_step` alone."""
    import duckdb

    events = duckdb.read_parquet(f"{out}/events/*/*.parquet", union_by_name=True)
    steps = "mot_steps" if "mot_steps" in events.columns else "[mot_step]"
    found = {event_id: (step, [s for s in performed if s is not None])
             for event_id, step, performed in events.select(f"event_id, mot_step, {steps}").fetchall()}
    records = [r for r in records if gold_steps(r) is not None]
    published = published_ids(out, [r["id"] for r in records], pseudonymize_key)
    missing = [r["id"] for r in records if published[r["id"]] not in found]
    if missing:
        raise ValueError(f"{len(missing)} gold records have no event in {out} (e.g. {missing[0]})")
    return {"records": len(records), "events": out,
            "mot": mot_report(records, [found[published[r["id"]]] for r in records])}


def gold_steps(record: dict) -> set[int] | None:
    """The gold MOT steps of a record (`mot_steps`, or `mot_step` alone), None when it has none."""
    if record.get("mot_steps") is not None:
        return set(record["mot_steps"])
    return {record["mot_step"]} if record.get("mot_step") is not None else None


def mot_scores(golds: list[set[int]], predicted: list[tuple[int | None, list[int]]]) -> dict:
    """Scores of predicted (primary step, all steps) against gold step sets (see the module docstring)."""
    primary = {s: [0, 0, 0] for s in STEPS}
    every = {s: [0, 0, 0] for s in STEPS}
    confusion = {str(s): {str(p): 0 for p in (*STEPS, "none")} for s in STEPS}
    for gold, (step, steps) in zip(golds, predicted):
        for s in STEPS:
            _count(primary[s], s in gold, step == s)
            _count(every[s], s in gold, s in steps)
        for s in gold:
            confusion[str(s)][str(step) if step else "none"] += 1
    covered = [s for s in STEPS if any(s in g for g in golds)]
    return {"records": len(golds),
            "primary_in_gold": round(sum(step in gold for gold, (step, _) in zip(golds, predicted)) / len(golds), 4)
            if golds else None,
            "mot_step": _scores(primary, covered), "mot_steps": _scores(every, covered),
            "mot_step_confusion": confusion}


def mot_report(records: list[dict], predicted: list[tuple[int | None, list[int]]]) -> dict:
    """MOT-step scores of the records with gold steps: overall, per source and per language."""
    scored = [(r, p) for r, p in zip(records, predicted) if gold_steps(r) is not None]
    out = {"all": mot_scores([gold_steps(r) for r, _ in scored], [p for _, p in scored])}
    for key in ("source", "lang"):
        groups: dict[str, list] = defaultdict(list)
        for r, p in scored:
            groups[str(r.get(key))].append((r, p))
        out[f"by_{key}"] = {k: mot_scores([gold_steps(r) for r, _ in v], [p for _, p in v])
                            for k, v in sorted(groups.items())}
    return out


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
    scored: list[tuple[dict, tuple]] = []  # (record, its predicted MOT steps)
    for lang, recs in sorted(by_lang.items()):
        pzb_recs = [r for r in recs if "labels" in r]
        step_recs = [r for r in recs if gold_steps(r) is not None]
        step_preds = []
        out: dict = {"records": len(recs)}
        dims = [d for d in DIMENSIONS if any(lb["dimension"] == d for r in pzb_recs for lb in r["labels"])]
        pairs = sorted({(lb["dimension"], lb["polarity"]) for r in pzb_recs for lb in r["labels"]},
                       key=lambda k: (DIMENSIONS.index(k[0]), k[1]))
        c_dim = {d: [0, 0, 0] for d in dims}
        c_pair = {p: [0, 0, 0] for p in pairs}
        fps, fns = Counter(), Counter()
        examples: dict[tuple, dict] = {}
        for r in recs:
            gold_mot = gold_steps(r)
            moment = gold_mot is not None
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
                step_preds.append((tags.mot_step, tags.mot_steps))
                if tags.mot_step not in gold_mot:
                    rule = next((e["rule"] for e in tags.evidence if e["tag"] == f"mot_step={tags.mot_step}"), "no cue")
                    key = ("mot_step", f"gold {','.join(map(str, sorted(gold_mot)))} -> {tags.mot_step}: {rule}")
                    fps[key] += 1
                    examples.setdefault(("fp",) + key, {"id": r["id"], "text": r["text"][:160]})
        if pzb_recs and dims:
            out["pzb_records"] = len(pzb_recs)
            out["dimension"] = _scores(c_dim, dims)
            out["dimension_polarity"] = _scores(c_pair, pairs)
        if step_recs:
            out["mot_step_records"] = len(step_recs)
            scores = mot_scores([gold_steps(r) for r in step_recs], step_preds)
            out.update({k: v for k, v in scores.items() if k != "records"})
            scored += zip(step_recs, step_preds)
        out["false_positives"] = [{"dimension": k[0], "rule": k[1], "count": n, "example": examples.get(("fp",) + k)}
                                  for k, n in fps.most_common(top)]
        out["false_negatives"] = [{"dimension": k[0], "count": n, "example": examples.get(("fn", k[0], 0))}
                                  for k, n in fns.most_common(top)]
        report["languages"][lang] = out
    if scored:
        report["mot"] = mot_report([r for r, _ in scored], [p for _, p in scored])
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
