"""Recall and false positives of the phone detector (pipelines.pii), measured on data it was not tuned on.

    .venv/bin/python -m benchmarks.pii_eval              # the figures in docs/pii.md
    .venv/bin/python -m benchmarks.pii_eval --against main~5   # the same figures for the detector at a revision
    .venv/bin/python -m benchmarks.pii_eval --review F   # every long digit run of the real texts, for labelling

1. `pii_eval/phones_heldout.jsonl`: 40 phone numbers in sentences and 20 sentences of look-alikes (order, case,
   tracking numbers, dates, amounts), written before the detector was changed and never used to tune it. Recall:
   labelled numbers whose digits all fall in one `[PHONE]` span; false positives: phone spans in the look-alikes.
2. Real texts in ../shared (not tuned on: en_dev, zh_dev, zh_dev_aic texts, the `attributes` of the two real
   event logs): every run of 7 or more digits (separators allowed) is a candidate; `pii_eval/real_labels.json`
   labels by hand the runs that are phone numbers (by corpus, record id and offset: no text is copied). Recall:
   labelled phones masked; false positives: phone spans on runs not labelled as phones, and card / ID spans.
   The dev corpora the rules were tuned on (threads.jsonl, en_train) are counted apart.
"""
from __future__ import annotations

import argparse
import gzip
import json
import re
from collections import Counter
from pathlib import Path

from benchmarks.pii_redaction import module_at
from pipelines import pii

detector = pii  # the module whose find_pii is measured (--against: pipelines/pii.py at a revision)
HERE = Path(__file__).resolve().parent / "pii_eval"
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
HELD_OUT = {
    "en_dev": ("text/en_dev.jsonl", "text"),
    "zh_dev": ("text/zh_dev.jsonl", "text"),
    "zh_dev_aic": ("text/zh_dev_aic.jsonl", "text"),
    "servicenow_attributes": ("events/servicenow_incident.jsonl.gz", "attributes"),
    "wabo_attributes": ("events/wabo_receipt.jsonl.gz", "attributes"),
}
TUNED_ON = {"threads": ("dialogues/threads.jsonl", "text"), "en_train": ("text/en_train.jsonl", "text")}
LONG_RUN = re.compile(r"[+＋(]?[0-9０-９](?:[ \-.()/]{0,2}[0-9０-９]){6,}")


def records(path: Path, field: str):
    """(record id, text) of each record: the `text`, or the `attributes` object as JSON."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            row = json.loads(line)
            value = row.get(field)
            text = json.dumps(value, ensure_ascii=False) if field == "attributes" and value is not None else value
            if text:
                yield str(row.get("id") or row.get("event_id") or line_no), text


def covered(span: tuple[int, int], spans) -> bool:
    """Whether every digit of `span` lies inside one phone span."""
    return any(s.kind == "phone" and s.start <= span[0] and span[1] <= s.end for s in spans)


def held_out_set() -> dict:
    rows = [json.loads(line) for line in (HERE / "phones_heldout.jsonl").open(encoding="utf-8")]
    found = total = false_positives = negatives = 0
    missed = []
    for row in rows:
        spans = detector.find_pii(row["text"])
        if not row["phones"]:
            negatives += 1
            false_positives += sum(s.kind == "phone" for s in spans)
        for phone in row["phones"]:
            start = row["text"].index(phone)
            total += 1
            if covered((start, start + len(phone)), spans):
                found += 1
            else:
                missed.append(phone)
    return {"phones": total, "found": found, "missed": missed, "look_alike_texts": negatives,
            "false_positive_spans": false_positives}


def real_corpus(name: str, path: Path, field: str, labels: set[tuple[str, int]]) -> dict:
    stats = Counter()
    false_positives: list[str] = []
    for record_id, text in records(path, field):
        stats["texts"] += 1
        runs = [m.span() for m in LONG_RUN.finditer(text)]
        stats["long_digit_runs"] += len(runs)
        spans = detector.find_pii(text) if runs or "@" in text else []
        for start, end in runs:
            phone = (record_id, start) in labels
            stats["labelled_phones"] += phone
            stats["phones_masked"] += phone and covered((start, end), spans)
        for s in spans:
            if s.kind == "email":
                continue
            if s.kind == "phone" and any((record_id, a) in labels and a <= s.start < b for a, b in runs):
                continue
            stats[f"false_positive_{s.kind}"] += 1
            false_positives.append(f"{name} {record_id} {s.kind} {text[s.start:s.end]!r}")
    return {"corpus": name, **stats, "false_positive_examples": false_positives[:10]}


def review(out: Path) -> None:
    """Every long digit run of the held-out real corpora with its context and what the detector made of it."""
    with out.open("w", encoding="utf-8") as f:
        for name, (relative, field) in HELD_OUT.items():
            if field == "attributes":
                continue  # machine-written logs: no phone numbers to label
            for record_id, text in records(SHARED / relative, field):
                spans = detector.find_pii(text)
                for m in LONG_RUN.finditer(text):
                    kind = "phone" if covered(m.span(), spans) else "-"
                    f.write(f"{name}\t{record_id}\t{m.start()}\t{kind}\t{text[max(0, m.start() - 60):m.end() + 20]!r}\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--review", type=Path, help="write the long digit runs of the real texts here and stop")
    parser.add_argument("--against", help="measure pipelines/pii.py as it was at this git revision")
    args = parser.parse_args(argv)
    global detector
    if args.against:
        detector = module_at(args.against)
    if args.review:
        review(args.review)
        return
    print(json.dumps({"held_out_set": held_out_set()}, ensure_ascii=False, indent=1))
    if not SHARED.is_dir():
        print("../shared/data not found: real-text figures skipped")
        return
    labels: dict[str, set[tuple[str, int]]] = {}
    for row in json.loads((HERE / "real_labels.json").read_text(encoding="utf-8"))["phones"]:
        labels.setdefault(row["corpus"], set()).add((row["id"], row["start"]))
    for group, corpora in (("held out", HELD_OUT), ("tuned on", TUNED_ON)):
        for name, (relative, field) in corpora.items():
            print(group, json.dumps(real_corpus(name, SHARED / relative, field, labels.get(name, set())), ensure_ascii=False))

if __name__ == "__main__":
    main()
