"""MOT-step evaluation (multi-label gold, primary step, confusion, per source) and the grouped splits."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.tagging.evaluate import mot_report, mot_scores, read_gold, select
from pipelines.tagging.folds import grouped_folds, held_out_groups

MOT_DEV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "dialogues" / "mot_dev.jsonl"


def test_held_out_groups_are_whole_groups_in_sha256_order():
    groups = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"] * 10
    order = sorted(set(groups), key=lambda g: hashlib.sha256(g.encode()).hexdigest())
    chosen = held_out_groups(groups, 0.25)
    taken, total = set(), 0
    for g in order:
        if total >= 0.25 * len(groups):
            break
        taken.add(g)
        total += groups.count(g)
    assert chosen == taken and total >= 5
    assert held_out_groups(groups, 0.25) == chosen  # deterministic


def test_grouped_folds_never_split_a_group():
    groups = ["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"] * 10 + ["e"]
    folds = grouped_folds(groups, 3)
    assert all(len({f for g2, f in zip(groups, folds) if g2 == g}) == 1 for g in set(groups))
    assert sorted(set(folds)) == [0, 1, 2]
    assert folds[groups.index("d")] != folds[groups.index("a")]  # the two largest groups go to different folds
    with pytest.raises(ValueError, match="cannot fill"):
        grouped_folds(["a", "b"], 3)


def test_mot_scores_primary_and_all_steps():
    golds = [{1, 3}, {2}, {3, 4}, {5}]
    predicted = [(3, [1, 3]), (1, [1, 2]), (None, []), (5, [3, 5])]
    s = mot_scores(golds, predicted)
    assert s["records"] == 4 and s["primary_in_gold"] == 0.5  # 3 in {1,3}, 5 in {5}
    # primary: step 1 predicted once (record 2, gold {2}): fp; gold 1 in record 1 not primary: fn
    assert s["mot_step"]["per_class"]["1"] | {} == {"tp": 0, "fp": 1, "fn": 1, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    # all steps: step 3 predicted in records 1 and 4, gold in 1 and 3
    assert (s["mot_steps"]["per_class"]["3"]["tp"], s["mot_steps"]["per_class"]["3"]["fp"],
            s["mot_steps"]["per_class"]["3"]["fn"]) == (1, 1, 1)
    assert s["mot_steps"]["per_class"]["2"]["f1"] == 1.0
    assert s["mot_step_confusion"]["3"] == {"1": 0, "2": 0, "3": 1, "4": 0, "5": 0, "none": 1}
    assert s["mot_step_confusion"]["2"]["1"] == 1


def test_mot_report_per_source_and_language(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"id": "a", "text": "Hi there, could you tell me your order number?", "mot_steps": [1, 2], "source": "s1"},
        {"id": "b", "text": "您好，请问有什么可以帮您？", "mot_step": 1},
        {"id": "c", "text": "a comment", "labels": []},
    ]) + "\n", encoding="utf-8")
    records = read_gold([path])
    assert [(r["lang"], r["source"]) for r in records] == [("en", "s1"), ("zh", "gold.jsonl"), ("en", "gold.jsonl")]
    report = mot_report(records, [(2, [1, 2]), (2, [1, 2]), (None, [])])
    assert report["all"]["records"] == 2 and report["all"]["primary_in_gold"] == 0.5
    assert report["by_source"]["s1"]["primary_in_gold"] == 1.0 and report["by_lang"]["zh"]["primary_in_gold"] == 0.0


def test_gold_steps_must_be_one_to_five(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "hi", "mot_steps": [0, 2]}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1: MOT steps must be 1..5"):
        read_gold([path])


def test_select_certain_and_split():
    records = [{"id": str(i), "company": c, "text": "x", "mot_steps": [1], "uncertain": i == 0}
               for i, c in enumerate(["a"] * 5 + ["b"] * 3 + ["c"] * 2 + ["d"] * 10)]
    held = held_out_groups([r["company"] for r in records], 0.25)
    dev, test = select(records, split="dev"), select(records, split="held-out")
    assert {r["company"] for r in test} == held and not {r["company"] for r in dev} & held
    assert len(dev) + len(test) == 20
    assert len(select(records, certain_only=True)) == 19
    with pytest.raises(ValueError, match="needs the field 'brand'"):
        select(records, split="dev", group_by="brand")


def test_eval_tagging_prints_the_mot_summary_and_confusion(tmp_path):
    path = tmp_path / "gold.jsonl"
    path.write_text(json.dumps({"id": "a", "text": "Sorry to hear that! Could you tell me your order number?",
                                "mot_steps": [1, 2]}) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["eval-tagging", "--gold", str(path), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "MOT steps per source and language" in result.output and "MOT step confusion" in result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mot"]["all"]["primary_in_gold"] == 1.0
    assert report["languages"]["en"]["mot_steps"]["macro_f1"] == 1.0


@pytest.mark.skipif(not MOT_DEV.is_file(), reason="needs ../shared/data/dialogues/mot_dev.jsonl")
def test_the_held_out_companies_of_mot_dev():
    records = read_gold([MOT_DEV])
    held = held_out_groups([r["company"] for r in records], 0.25)
    assert sorted(held) == ["AmazonHelp", "Delta", "DropboxSupport", "MojangSupport", "YahooCare", "hulu_support"]
    assert sum(r["company"] in held for r in records) == 156


def test_eval_tagging_scores_the_events_of_a_run(tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"id": i, "text": "t", "mot_steps": s}) + "\n"
                            for i, s in (("e1", [1, 3]), ("e2", [2]))), encoding="utf-8")
    (tmp_path / "out" / "events" / "dt=2020-01-01").mkdir(parents=True)
    pq.write_table(pa.table({"event_id": ["e1", "e2", "e3"], "mot_step": pa.array([3, None, 1], pa.int8()),
                             "mot_steps": pa.array([[1, 3], [], [1]], pa.list_(pa.int8()))}),
                   tmp_path / "out" / "events" / "dt=2020-01-01" / "part-0.parquet")
    result = CliRunner().invoke(app, ["eval-tagging", "--gold", str(gold), "--events", str(tmp_path / "out"),
                                      "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    mot = json.loads((tmp_path / "r.json").read_text())["mot"]["all"]
    assert (mot["records"], mot["primary_in_gold"], mot["mot_steps"]["micro"]["f1"]) == (2, 0.5, 0.8)
    gold.write_text(json.dumps({"id": "e9", "text": "t", "mot_steps": [1]}) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["eval-tagging", "--gold", str(gold), "--events", str(tmp_path / "out")])
    assert result.exit_code != 0 and "1 gold records have no event" in result.output


def test_eval_tagging_finds_events_whose_ids_were_hashed_as_pii(tmp_path):
    """A card-like id is published as its keyed hash (the output's identifier key): the gold id still finds it."""
    from pipelines.pii import pseudonymize

    key = "ab" * 32
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"id": i, "text": "t", "mot_steps": [1]}) + "\n"
                            for i in ("4111111111111111", "e2")), encoding="utf-8")
    (tmp_path / "out" / "events" / "dt=2020-01-01").mkdir(parents=True)
    (tmp_path / "out" / "_restricted" / "_keys").mkdir(parents=True)
    (tmp_path / "out" / "_restricted" / "_keys" / "identifiers.key").write_text(key, encoding="ascii")
    hashed = pseudonymize("4111111111111111", bytes.fromhex(key), "p_")
    pq.write_table(pa.table({"event_id": [hashed, "e2"], "mot_step": pa.array([1, 2], pa.int8()),
                             "mot_steps": pa.array([[1], [2]], pa.list_(pa.int8()))}),
                   tmp_path / "out" / "events" / "dt=2020-01-01" / "part-0.parquet")
    result = CliRunner().invoke(app, ["eval-tagging", "--gold", str(gold), "--events", str(tmp_path / "out"),
                                      "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    mot = json.loads((tmp_path / "r.json").read_text())["mot"]["all"]
    assert (mot["records"], mot["primary_in_gold"]) == (2, 0.5)


PERMIT_OFFICE = Path(__file__).resolve().parents[2] / "examples" / "playbooks" / "permit_office.yaml"


def _run_output(tmp_path: Path, **settings) -> Path:
    """A `motpipe run` output whose first event id is a Dutch mobile number: PII only with the playbook's NL region."""
    from pipelines.config import RunConfig
    from pipelines.pipeline import run

    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps({"event_id": i, "occurred_at": f"2026-10-01T09:0{n}:00Z", "customer_id": "c1",
                                          "channel": "branch", "touchpoint": "greeting", "text": "Welcome, how can I help?"})
                              + "\n" for n, i in enumerate(("06-12345678", "e2"))), encoding="utf-8")
    out = tmp_path / "out"
    run(RunConfig(touchpoints=[str(events)], out=str(out), playbook=str(PERMIT_OFFICE), identity_key="k", **settings))
    return out


def _eval_events(tmp_path: Path, out: Path, *options: str):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps({"id": i, "text": "t", "mot_steps": [1]}) + "\n" for i in ("06-12345678", "e2")),
                    encoding="utf-8")
    return CliRunner().invoke(app, ["eval-tagging", "--gold", str(gold), "--events", str(out),
                                    "--json", str(tmp_path / "r.json"), *options])


def test_eval_tagging_hashes_gold_ids_with_the_phone_regions_and_key_of_the_run(tmp_path):
    out = _run_output(tmp_path, restricted_out=str(tmp_path / "restricted"))
    events = pq.read_table(out / "events").column("event_id").to_pylist()
    assert "06-12345678" not in events and "e2" in events  # hashed: NL is a region of the permit office playbook
    result = _eval_events(tmp_path, out)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["mot"]["all"]["records"] == 2


def test_eval_tagging_of_a_pseudonymised_run_needs_its_key(tmp_path):
    out = _run_output(tmp_path, pseudonymize_key="secret")
    without = _eval_events(tmp_path, out)
    assert without.exit_code == 2 and "pseudonymised its ids: give its --pseudonymize-key" in without.output
    wrong = _eval_events(tmp_path, out, "--pseudonymize-key", "other")
    assert wrong.exit_code == 2 and "1 gold records have no event" in wrong.output
    right = _eval_events(tmp_path, out, "--pseudonymize-key", "secret")
    assert right.exit_code == 0, right.output
    assert json.loads((tmp_path / "r.json").read_text())["mot"]["all"]["records"] == 2


def test_eval_tagging_refuses_a_key_the_run_did_not_use(tmp_path):
    result = _eval_events(tmp_path, _run_output(tmp_path), "--pseudonymize-key", "secret")
    assert result.exit_code == 2 and "did not pseudonymise its ids: leave out --pseudonymize-key" in result.output
