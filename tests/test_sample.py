"""The sample generator: determinism, exact counts, and a manifest that the pipeline's own readers agree with."""
from __future__ import annotations

import csv
import gzip
import json
import re
from collections import Counter, defaultdict
from datetime import timedelta, timezone
from pathlib import Path

import pytest

import pipelines.sample as sample
from pipelines.ingest.formats import read_records
from pipelines.playbook import load_playbook
from pipelines.pii import id_check_char, luhn_check_digit
from pipelines.sample import EVENT_FILES, FEEDBACK_FILES, SHAPES, generate_sample
from pipelines.ingest.validate import Rejection, validate_event, validate_feedback

UTC = timezone.utc
EVENTS = 2000
CONFLICT_MARK = "§conflict§"


@pytest.fixture(scope="module")
def out(tmp_path_factory, request) -> Path:
    """2000 events, feedback_ratio 0.5 (1000 feedback rows, so every feedback error kind occurs).

    Conflicting duplicates carry a marker in their text/comment so the tests can check they never win.
    """
    patch = pytest.MonkeyPatch()
    original = sample._conflict

    def marked(rng, row, dataset):
        row = original(rng, row, dataset)
        field = "text" if dataset == "events" else "comment"
        row[field] = (row[field] or "") + CONFLICT_MARK
        return row

    patch.setattr(sample, "_conflict", marked)
    directory = tmp_path_factory.mktemp("sample")
    generate_sample(directory, EVENTS, feedback_ratio=0.5)
    patch.undo()
    return directory


@pytest.fixture(scope="module")
def manifest(out) -> dict:
    return json.loads((out / "manifest.json").read_text(encoding="utf-8"))


def _text(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        return handle.read()


def _data_rows(path: Path) -> int:
    text = _text(path)
    if ".csv" in path.name:
        return sum(1 for cells in csv.reader(text.splitlines()) if cells) - 1
    return sum(1 for line in text.splitlines() if line.strip())


def _read(out: Path, dataset: str, playbook: str = "bank_branch", shape: str = "mixed"):
    """Validate every row like the pipeline; dedup by id keeping the earliest (file, line).

    Returns (winners by id, Counter of quarantine kinds, number of exact duplicates).
    """
    validate = validate_event if dataset == "events" else validate_feedback
    id_field = "event_id" if dataset == "events" else "feedback_id"
    channels = load_playbook(playbook).allowed_channels
    kinds: Counter = Counter()
    winners: dict[str, dict] = {}
    exact = 0
    form = SHAPES[shape]
    for name in sorted(form.event_files if dataset == "events" else form.feedback_files):
        for record in read_records(str(out / name)):
            clean = Rejection(sample.E.UNPARSEABLE_LINE, None, "") if record.fields is None else validate(record.fields, channels, UTC)
            if isinstance(clean, Rejection):
                kinds[clean.kind.value] += 1
                continue
            kept = winners.setdefault(clean[id_field], clean)
            if kept is not clean:
                if kept == clean:
                    exact += 1
                else:
                    kinds["conflicting_duplicate"] += 1
    return winners, kinds, exact


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    generate_sample(tmp_path / "a", 500, seed=3)
    generate_sample(tmp_path / "b", 500, seed=3)
    generate_sample(tmp_path / "c", 500, seed=4)
    names = [*EVENT_FILES, *FEEDBACK_FILES, "manifest.json"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert any((tmp_path / "a" / n).read_bytes() != (tmp_path / "c" / n).read_bytes() for n in names)


def test_exact_row_count_spread_over_three_files(out, manifest):
    per_file = {name: _data_rows(out / name) for name in EVENT_FILES}
    assert sum(per_file.values()) == EVENTS == manifest["events"]["rows"]
    for name, share in zip(EVENT_FILES, (0.4, 0.3, 0.3)):
        assert abs(per_file[name] / EVENTS - share) < 0.05, per_file
    assert sum(_data_rows(out / name) for name in FEEDBACK_FILES) == manifest["feedback"]["rows"] == 1000
    assert manifest["files"] == sorted([*EVENT_FILES, *FEEDBACK_FILES])
    assert "\n\n" in _text(out / EVENT_FILES[1])  # one blank line, not a row


def test_manifest_counts_and_invariants(manifest):
    assert set(manifest) == {"seed", "shape", "playbook", "events", "feedback", "pii_strings", "files", "driver_weights"}
    assert (manifest["seed"], manifest["shape"], manifest["playbook"]) == (7, "mixed", "bank_branch")
    ev, fb = manifest["events"], manifest["feedback"]
    for part in (ev, fb):
        assert part["rows"] == part["good_rows"] + part["exact_duplicates"] + sum(part["quarantine"].values())
        assert part["quarantine"]["conflicting_duplicate"] == part["conflicting_duplicates"]
    # 2000 rows: 40 bad (6,6,6,6,6,5,5), 40 duplicates (30 exact, 10 conflicting)
    assert ev["quarantine"] == {"unparseable_line": 6, "missing_required_field": 6, "wrong_type": 6, "bad_timestamp": 6,
                                "out_of_range": 6, "unknown_channel": 5, "unknown_outcome": 5, "conflicting_duplicate": 10}
    assert (ev["good_rows"], ev["exact_duplicates"]) == (1920, 30)
    # 1000 rows: 20 bad (3,3,3,3,3,3,2), 20 duplicates (15 exact, 5 conflicting)
    assert fb["quarantine"] == {"unparseable_line": 3, "missing_required_field": 3, "wrong_type": 3, "bad_timestamp": 3,
                                "out_of_range": 3, "unknown_channel": 3, "no_feedback_signal": 2, "conflicting_duplicate": 5}
    assert (fb["good_rows"], fb["exact_duplicates"]) == (960, 15)
    assert fb["with_visit_id"] + fb["linkable_by_time"] + fb["unlinkable"] == fb["good_rows"]
    assert 0 < fb["unlinkable"] < 0.1 * fb["good_rows"]
    assert 0.35 < ev["visits_with_visit_id"] / ev["visits"] < 0.65
    assert 0 < ev["unmapped_touchpoint_rows"] < 0.05 * ev["good_rows"]
    assert ev["texts_with_pii"] > 0 and fb["comments_with_pii"] > 0 and ev["naive_timestamps"] > 0


def test_pipeline_validation_and_dedup_agree_with_manifest(out, manifest):
    for dataset in ("events", "feedback"):
        winners, kinds, exact = _read(out, dataset)
        part = manifest[dataset]
        assert len(winners) == part["good_rows"], dataset
        assert exact == part["exact_duplicates"], dataset
        assert {k: v for k, v in part["quarantine"].items() if v} == dict(kinds), dataset
        field = "text" if dataset == "events" else "comment"
        assert not any(CONFLICT_MARK in (row[field] or "") for row in winners.values()), "a conflicting duplicate won"


def test_injected_problems_in_every_format(out):
    raw_kinds = defaultdict(set)
    channels = load_playbook("bank_branch").allowed_channels
    for dataset, names in (("events", EVENT_FILES), ("feedback", FEEDBACK_FILES)):
        validate = validate_event if dataset == "events" else validate_feedback
        for name in names:
            for record in read_records(str(out / name)):
                if record.fields is None:
                    raw_kinds[name].add("unparseable_line")
                    continue
                result = validate(record.fields, channels, UTC)
                if isinstance(result, Rejection):
                    raw_kinds[name].add(result.kind.value)
    for name in (*EVENT_FILES, *FEEDBACK_FILES):
        assert len(raw_kinds[name]) >= 4 and "unparseable_line" in raw_kinds[name], (name, raw_kinds[name])
    assert set().union(*(raw_kinds[n] for n in EVENT_FILES)) == {k.value for k in sample.EVENT_BAD_KINDS}
    assert set().union(*(raw_kinds[n] for n in FEEDBACK_FILES)) == {k.value for k in sample.FEEDBACK_BAD_KINDS}
    jsonl_lines = _text(out / EVENT_FILES[1]).splitlines()
    assert any(line.startswith(" {") for line in jsonl_lines)  # exact duplicates written with other spacing


def test_csv_files_parse_with_flattened_ratings(out):
    events = list(csv.DictReader(_text(out / EVENT_FILES[2]).splitlines()))
    assert list(events[0])[:5] == ["event_id", "occurred_at", "customer_id", "visit_id", "channel"]
    attributes = [json.loads(r["attributes"]) for r in events if (r["attributes"] or "").startswith("{")]
    assert attributes and all(isinstance(a, dict) for a in attributes)
    assert any(r["visit_id"] == "" for r in events) and any(r["visit_id"].startswith("v-") for r in events)
    rows = list(csv.DictReader(_text(out / FEEDBACK_FILES[1]).splitlines()))
    columns = set(rows[0])
    assert {"rating.Q1.expectation", "rating.Q1.perception", "rating.Q22.perception", "rating.empathy",
            "rating.reliability.expectation"} <= columns
    assert "ratings" not in columns
    assert any(r["rating.Q5.expectation"] and r["rating.Q5.perception"] for r in rows)
    assert any(r["rating.tangibles"] for r in rows)


def test_pii_strings_are_valid_and_present(out, manifest):
    everything = "".join(_text(out / name) for name in (*EVENT_FILES, *FEEDBACK_FILES))
    pii = manifest["pii_strings"]
    assert pii and all(value in everything for value in pii)
    kinds = Counter()
    for value in pii:
        if "@" in value:
            kinds["email"] += 1
        elif re.fullmatch(r"1[3-9]\d{9}", value):
            kinds["phone"] += 1
        elif len(value) == 18 and re.fullmatch(r"\d{17}[\dX]", value) and value[17] == id_check_char(value[:17]):
            assert 1950 <= int(value[6:10]) <= 2010 and 1 <= int(value[10:12]) <= 12
            kinds["id"] += 1
        else:
            assert re.fullmatch(r"\d{16}|\d{19}", value) and value[-1] == luhn_check_digit(value[:-1]), value
            kinds["card"] += 1
    assert set(kinds) == {"email", "phone", "id", "card"}
    for dataset, field, key in (("events", "text", "texts_with_pii"), ("feedback", "comment", "comments_with_pii")):
        winners, _, _ = _read(out, dataset)
        with_pii = sum(1 for row in winners.values() if row[field] and any(v in row[field] for v in pii))
        assert with_pii == manifest[dataset][key]


def test_check_characters():
    assert id_check_char("11010519491231002") == "X"  # the GB 11643 example
    assert luhn_check_digit("7992739871") == "3"


def test_visits_are_recovered_by_a_30_minute_gap(out, manifest):
    winners, _, _ = _read(out, "events")
    ev = manifest["events"]
    follow_ups = {name for name, rule in load_playbook("bank_branch").touchpoints.items() if rule.mot_step == 5}
    visits: dict[tuple, list] = defaultdict(list)
    for row in sorted(winners.values(), key=lambda r: (r["customer_id"], r["occurred_at"])):
        if row["visit_id"]:
            visits[(row["customer_id"], row["visit_id"])].append(row)
    sessions = 0
    for customer, rows in _by_customer(r for r in winners.values() if not r["visit_id"]).items():
        previous = None
        for row in rows:
            gap = row["occurred_at"] - previous if previous else None
            if gap is None or gap > timedelta(minutes=30):
                assert gap is None or gap > timedelta(hours=2)
                sessions += 1
            visits[(customer, f"session-{sessions}")].append(row)
            previous = row["occurred_at"]
    assert len(visits) == ev["visits"]
    assert sum(1 for _, visit_id in visits if not visit_id.startswith("session-")) == ev["visits_with_visit_id"]
    spans = defaultdict(list)
    for (customer, _), rows in visits.items():
        rows.sort(key=lambda r: r["occurred_at"])
        for before, after in zip(rows, rows[1:]):
            gap = after["occurred_at"] - before["occurred_at"]
            assert timedelta(minutes=1) <= gap < timedelta(minutes=30) or (
                gap >= timedelta(hours=20) and after["touchpoint"] in follow_ups and after is rows[-1]
            )
        assert rows[-1]["outcome"] is not None and all(r["outcome"] is None for r in rows[:-1])
        spans[customer].append((rows[0]["occurred_at"], rows[-1]["occurred_at"]))
    for customer_spans in spans.values():
        customer_spans.sort()
        for (_, end), (begin, _) in zip(customer_spans, customer_spans[1:]):
            assert begin - end > timedelta(hours=2)
    assert len(spans) == ev["customers"]
    mapped = set(load_playbook("bank_branch").touchpoints)
    assert sum(r["touchpoint"] not in mapped for r in winners.values()) == ev["unmapped_touchpoint_rows"]
    assert 3 <= ev["good_rows"] / ev["visits"] <= 9


def _by_customer(rows) -> dict[str, list]:
    grouped = defaultdict(list)
    for row in rows:
        grouped[row["customer_id"]].append(row)
    return {c: sorted(rs, key=lambda r: r["occurred_at"]) for c, rs in grouped.items()}


def test_naive_timestamps_and_shuffled_order(out, manifest):
    naive = 0
    winners, _, _ = _read(out, "events")
    ids = set(winners)
    order = []
    for line in _text(out / EVENT_FILES[1]).splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("occurred_at"), str):
            order.append(row["occurred_at"])
    assert order != sorted(order)
    seen = set()
    for name in sorted(EVENT_FILES):
        for record in read_records(str(out / name)):
            fields = record.fields or {}
            event_id = fields.get("event_id")
            if event_id in ids and event_id not in seen:
                seen.add(event_id)
                naive += re.fullmatch(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d", fields["occurred_at"]) is not None
    assert naive == manifest["events"]["naive_timestamps"]


def test_feedback_links(out, manifest):
    events, _, _ = _read(out, "events")
    feedback, _, _ = _read(out, "feedback")
    visit_ids = {r["visit_id"] for r in events.values() if r["visit_id"]}
    ends = defaultdict(list)  # per customer: the time of every event (enough for "a visit ended before")
    for row in events.values():
        ends[row["customer_id"]].append(row["occurred_at"])
    counts = Counter()
    for row in feedback.values():
        if row["visit_id"]:
            assert row["visit_id"] in visit_ids
            counts["with_visit_id"] += 1
        elif any(timedelta(0) <= row["submitted_at"] - t <= timedelta(days=7) for t in ends.get(row["customer_id"], [])):
            counts["linkable_by_time"] += 1
        else:
            assert row["customer_id"] not in ends
            counts["unlinkable"] += 1
    fb = manifest["feedback"]
    assert dict(counts) == {k: fb[k] for k in ("with_visit_id", "linkable_by_time", "unlinkable")}


@pytest.mark.parametrize("playbook", ["retail_counter", "airline"])
def test_other_playbooks(tmp_path, playbook):
    manifest = generate_sample(tmp_path, 600, playbook=playbook, seed=11)
    assert manifest["playbook"] == playbook
    winners, kinds, exact = _read(tmp_path, "events", playbook)
    part = manifest["events"]
    assert (len(winners), exact) == (part["good_rows"], part["exact_duplicates"])
    assert {k: v for k, v in part["quarantine"].items() if v} == dict(kinds)
    channels = Counter(r["channel"] for r in winners.values())
    expected = {"retail_counter": {"store", "web", "app", "phone"}, "airline": {"airport", "onboard", "app", "chat", "email"}}
    assert expected[playbook] <= set(channels) <= load_playbook(playbook).allowed_channels


def test_scores_follow_the_recorded_driver_weights(tmp_path):
    """csat rises with the perceptions weighted as in DRIVER_WEIGHTS: the most heavily weighted dimension
    correlates with csat more than the least weighted, in the generated rows themselves."""
    import statistics

    from pipelines.sample import DRIVER_WEIGHTS

    manifest = generate_sample(tmp_path, 6000, feedback_ratio=0.5, seed=3)
    assert manifest["driver_weights"] == DRIVER_WEIGHTS
    rated = []
    with gzip.open(tmp_path / "feedback/part-00000.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # an injected unparseable line
            ratings = row.get("ratings") if isinstance(row, dict) else None
            if isinstance(ratings, dict) and isinstance(row.get("csat"), int) and all(
                    isinstance(ratings.get(d), (int, dict)) for d in DRIVER_WEIGHTS["csat"]):
                rated.append((row["csat"], {d: v if isinstance(v, int) else v.get("perception")
                                            for d, v in ratings.items() if d in DRIVER_WEIGHTS["csat"]}))
    assert len(rated) > 100
    weights = DRIVER_WEIGHTS["csat"]
    strongest, weakest = max(weights, key=weights.get), min(weights, key=weights.get)
    correlation = {d: statistics.correlation([c for c, _ in rated], [p[d] for _, p in rated]) for d in (strongest, weakest)}
    assert correlation[strongest] > correlation[weakest] + 0.2


def test_production_shape_one_big_jsonl_file_per_dataset_with_faults_spread_evenly(tmp_path):
    manifest = generate_sample(tmp_path, 8000, shape="production", seed=5)
    assert manifest["files"] == ["feedback/feedback.jsonl", "touchpoints/events.jsonl"]
    ev, fb = manifest["events"], manifest["feedback"]
    # 1.5% faulty lines of three kinds, 0.5% exact duplicates, none conflicting
    assert ev["quarantine"] == {"unparseable_line": 40, "missing_required_field": 40, "bad_timestamp": 40,
                                "conflicting_duplicate": 0}
    assert (ev["good_rows"], ev["exact_duplicates"], fb["rows"], fb["exact_duplicates"]) == (7840, 40, 800, 4)
    for dataset in ("events", "feedback"):
        winners, kinds, exact = _read(tmp_path, dataset, shape="production")
        part = manifest[dataset]
        assert (len(winners), exact) == (part["good_rows"], part["exact_duplicates"]), dataset
        assert {k: v for k, v in part["quarantine"].items() if v} == dict(kinds), dataset
    lines = _text(tmp_path / "touchpoints" / "events.jsonl").splitlines()
    assert len(lines) == 8000 and 240 < sum(len(line.encode()) for line in lines) / len(lines) < 310
    rows = [json.loads(line) for line in lines if line.startswith("{") and line.endswith("}")]
    assert not any(v is None for row in rows for v in row.values())  # null fields are left out
    seconds = [row[f] for row in rows for f in ("wait_s", "duration_s") if isinstance(row.get(f), (int, float))]
    assert seconds and all(isinstance(v, int) for v in seconds)
    assert 0.05 < ev["texts_with_pii"] / ev["good_rows"] < 0.09
    assert {"@" in v for v in manifest["pii_strings"]} == {True, False}  # e-mail addresses and phone numbers only
    channels = load_playbook("bank_branch").allowed_channels
    faulty = [i for i, record in enumerate(read_records(str(tmp_path / "touchpoints" / "events.jsonl")))
              if record.fields is None or isinstance(validate_event(record.fields, channels, UTC), Rejection)]
    quarters = Counter(4 * i // len(lines) for i in faulty)
    assert len(faulty) == 120 and all(15 <= quarters[q] <= 45 for q in range(4)), quarters  # 30 each, give or take
