"""Training the learned layer (motpipe train-tagger), its licences and card, and the model beside the rules."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.playbook import ModelLang, ModelSettings, ModelTask, load_playbook
from pipelines.tagging import Tagger, learned
from pipelines.tagging.evaluate import half_of, split_half
from pipelines.tagging.linear import Settings
from pipelines.tagging.training import LicenceError, licences, train_and_write

SMALL = Settings(char_en=(3, 4), min_df=1, c=2.0)
EN = [  # (text, labels, source): two sources, so the cross-validation has two folds
    ("my card payment was declined", [("reliability", "negative")], "shop"),
    ("why was my transfer declined again", [("reliability", "negative")], "shop"),
    ("the payment failed twice", [("reliability", "negative")], "shop"),
    ("declined at the till", [("reliability", "negative")], "shop"),
    ("the waiter ignored us for ages", [("responsiveness", "negative")], "shop"),
    ("nobody answered my messages for days", [("responsiveness", "negative")], "shop"),
    ("the clerk was rude to me", [("assurance", "negative")], "shop"),
    ("how do I order a card", [], "shop"),
    ("what is the exchange rate today", [], "shop"),
    ("my transfer was declined", [("reliability", "negative")], "cafe"),
    ("payment declined for no reason", [("reliability", "negative")], "cafe"),
    ("we were ignored by the waiter", [("responsiveness", "negative")], "cafe"),
    ("still no answer to my messages", [("responsiveness", "negative")], "cafe"),
    ("a rude and clueless waiter", [("assurance", "negative")], "cafe"),
    ("lovely view from the terrace", [], "cafe"),
    ("where is the nearest branch", [], "cafe"),
]
ZH = [
    ("上菜太慢了等了很久", [("responsiveness", "negative")], "asap"),
    ("上菜速度慢", [("responsiveness", "negative")], "asap"),
    ("菜上得慢", [("responsiveness", "negative")], "asap"),
    ("装修很有格调", [("tangibles", "positive")], "asap"),
    ("装修漂亮", [("tangibles", "positive")], "asap"),
    ("味道一般般", [], "asap"),
    ("价格便宜", [], "asap"),
]


def _gold(path: Path, rows, lang: str) -> Path:
    path.write_text("".join(json.dumps({"id": f"{lang}{i}", "lang": lang, "text": t, "source": s,
                                        "labels": [{"dimension": d, "polarity": p} for d, p in labels]},
                                       ensure_ascii=False) + "\n" for i, (t, labels, s) in enumerate(rows)),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Models for en and zh trained on the small sets above, in a folder laid out as the package's."""
    base = tmp_path_factory.mktemp("train")
    files = [_gold(base / "en.jsonl", EN, "en"), _gold(base / "zh.jsonl", ZH, "zh")]
    cards = train_and_write("dimensions", files, None, Tagger(load_playbook("base")), SMALL, base / "models",
                            "2026-01-01", declared={"shop": "CC0-1.0", "cafe": "CC0-1.0"})
    return base, files, cards


def test_licences_allow_only_sources_that_may_ship():
    shippable = [{"source": "banking77"}, {"source": "mams-acsa"}, {"source": "asap"}]
    sources, ships = licences(shippable, {}, False)
    assert ships and sources["banking77"] == {"licence": "CC BY 4.0 (PolyAI Banking77)", "shippable": True, "records": 1}
    for source in ("twitter_airline", "aichallenger2018"):
        with pytest.raises(LicenceError, match="may not be trained on"):
            licences(shippable + [{"source": source}], {}, False)
        assert licences(shippable + [{"source": source}], {}, True)[1] is False
    with pytest.raises(LicenceError, match="no known licence"):
        licences([{"text": "no source"}], {}, False)
    assert licences([{"source": "mine"}], {"mine": "proprietary, ours"}, False)[1] is True


def test_training_writes_model_and_card_and_is_deterministic(trained, tmp_path):
    base, files, cards = trained
    assert [c["path"] for c in cards] == ["dimensions-en", "dimensions-zh"]
    en = cards[0]
    assert en["training_files"][0]["sha256"] == __import__("hashlib").sha256(files[0].read_bytes()).hexdigest()
    assert en["training_files"] == [{"name": "en.jsonl", "sha256": en["training_files"][0]["sha256"], "records": 16},
                                    {"name": "zh.jsonl", "sha256": en["training_files"][1]["sha256"], "records": 0}]
    assert en["sources"] == {"cafe": {"licence": "CC0-1.0", "shippable": True, "records": 7},
                             "shop": {"licence": "CC0-1.0", "shippable": True, "records": 9}}
    assert en["shippable"] and en["date"] == "2026-01-01" and en["settings"]["seed"] == 0
    assert "reliability" in en["labels"] and "reliability:negative" in en["labels"]
    cv = en["cross_validation"]
    assert sorted(cv["groups"]) == ["cafe", "shop"] and cv["groups"]["cafe"]["trained_on"] == 9
    assert cv["pooled"]["rules+model"]["records"] == 16
    zh_cv = cards[1]["cross_validation"]
    assert zh_cv["note"].startswith("one source only (asap): 5 folds by sha256 of the id, NOT grouped")
    assert sum(g["rules"]["records"] for g in zh_cv["groups"].values()) == 7
    again = train_and_write("dimensions", files, ["en"], Tagger(load_playbook("base")), SMALL, tmp_path,
                            "2026-01-01", declared={"shop": "CC0-1.0", "cafe": "CC0-1.0"})
    assert again[0] == en
    for name in ("weights.npz", "model.json", "card.json", "CARD.md"):
        assert (tmp_path / "dimensions-en" / name).read_bytes() == (base / "models" / "dimensions-en" / name).read_bytes()
    card_md = (tmp_path / "dimensions-en" / "CARD.md").read_text(encoding="utf-8")
    assert "| cafe | CC0-1.0 | yes | 7 |" in card_md and "Shippable: **yes**" in card_md


def test_noncommercial_models_never_go_into_the_package(tmp_path):
    gold = tmp_path / "tw.jsonl"
    gold.write_text(json.dumps({"id": "1", "lang": "en", "text": "late again", "source": "twitter_airline",
                                "labels": [{"dimension": "reliability", "polarity": "negative"}]}) + "\n")
    with pytest.raises(LicenceError, match="outside the package"):
        train_and_write("dimensions", [gold], None, Tagger(load_playbook("base")), SMALL, None, "2026-01-01",
                        allow_noncommercial=True)
    result = CliRunner().invoke(app, ["train-tagger", "--gold", str(gold), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and "twitter_airline" in result.output and "may not be trained on" in result.output


def test_train_tagger_command(tmp_path):
    gold = _gold(tmp_path / "en.jsonl", EN, "en")
    args = ["train-tagger", "--gold", str(gold), "--out", str(tmp_path / "m"), "--date", "2026-01-01", "--min-df", "1",
            "--licence", "shop=CC0-1.0", "--licence", "cafe=CC0-1.0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "left out cafe: macro-F1 model" in result.output and "left out all folds" in result.output
    card = json.loads((tmp_path / "m" / "dimensions-en" / "card.json").read_text(encoding="utf-8"))
    assert card["command"] == ("motpipe train-tagger --task dimensions --gold en.jsonl --group-by source --split all "
                               "--playbook base") and card["settings"]["min_df"] == 1
    bad = CliRunner().invoke(app, args[:-4] + ["--licence", "shop"])
    assert bad.exit_code == 2 and "SOURCE=LICENCE" in bad.output
    assert CliRunner().invoke(app, args + ["--task", "nope"]).exit_code == 2


# --- the model beside the rules ------------------------------------------------------------------
def _tagger(monkeypatch, trained, **lang_settings) -> Tagger:
    base, _, _ = trained
    book = load_playbook("base")
    task = ModelTask(enabled=True, zh=ModelLang(**lang_settings), en=ModelLang(**lang_settings))
    return Tagger(book.model_copy(update={"model": ModelSettings(models=str(base / "models"), dimensions=task)}))


def test_the_model_fills_what_the_rules_miss_with_spans_in_the_text(monkeypatch, trained):
    tagger = _tagger(monkeypatch, trained, threshold=0.5)
    text = "Payment declined at the till, 上菜速度慢"
    rules = tagger.tag_comment(text, use_model=False)
    m = tagger.tag_comment(text)
    assert "reliability" not in {t["dimension"] for t in rules.pzb_tags}
    assert {"dimension": "reliability", "polarity": "negative"} in m.pzb_tags and m.polarity == "negative"
    model_rows = [e for e in m.evidence if e["rule"].startswith("model:")]
    assert model_rows and all(e["rule"].startswith("model:dimensions:en:p=") for e in model_rows
                              if e["tag"] == "reliability:negative")
    for e in model_rows:
        assert e["field"] == "comment" and text[e["start"]:e["end"]] == e["span"]
    assert [e for e in rules.evidence] == [e for e in m.evidence if not e["rule"].startswith("model:")]
    events = tagger.tag_moment(None, text, None)
    assert events.pzb_tags == m.pzb_tags and {e["field"] for e in events.evidence if e["rule"].startswith("model:")} == {"text"}


def test_thresholds_and_switches_come_from_the_playbook(monkeypatch, trained):
    text = "Payment declined at the till"
    assert _tagger(monkeypatch, trained, threshold=1.0).tag_comment(text).pzb_tags == []
    assert _tagger(monkeypatch, trained, threshold=0.5, thresholds={"reliability": 1.0}).tag_comment(text).pzb_tags == []
    assert _tagger(monkeypatch, trained, enabled=False).tag_comment(text).pzb_tags == []
    assert _tagger(monkeypatch, trained).tag_comment(text).pzb_tags == [{"dimension": "reliability", "polarity": "negative"}]
    raw = yaml.safe_load("""
name: mine
version: "1"
extends: base
model:
  models: models
  dimensions:
    enabled: true
    en: {threshold: 0.7, thresholds: {assurance: 0.9}, veto_below: 0.1}
    zh: {enabled: false}
""")
    path = Path(trained[0]) / "mine.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    book = load_playbook(str(path))
    assert Tagger(book).dimension_models["en"][0].labels == _tagger(monkeypatch, trained).dimension_models["en"][0].labels
    assert "zh" not in Tagger(book).dimension_models  # zh switched off
    model = book.model.dimensions
    assert model.enabled and model.en.threshold_of("assurance") == 0.9 and model.en.threshold_of("tangibles") == 0.7
    assert model.en.veto_below == 0.1 and model.zh.enabled is False


def test_a_weak_rule_tag_is_vetoed_but_a_certain_one_stays(monkeypatch, trained):
    strict = _tagger(monkeypatch, trained, threshold=1.0, veto_below=1.0)
    mention = "the staff at the counter"  # a bare mention: assurance neutral by the rules
    assert strict.tag_comment(mention, use_model=False).pzb_tags == [{"dimension": "assurance", "polarity": "neutral"}]
    assert strict.tag_comment(mention).pzb_tags == [] and strict.tag_comment(mention).evidence == []
    certain = "the staff were rude"
    assert strict.tag_comment(certain).pzb_tags == [{"dimension": "assurance", "polarity": "negative"}]
    per_label = _tagger(monkeypatch, trained, threshold=1.0, vetoes={"assurance": 1.0})
    assert per_label.tag_comment(mention).pzb_tags == []
    assert _tagger(monkeypatch, trained, threshold=1.0, vetoes={"tangibles": 1.0}).tag_comment(mention).pzb_tags == [
        {"dimension": "assurance", "polarity": "neutral"}]


def test_a_model_judges_only_the_cues_of_its_language(trained):
    book = load_playbook("base")
    task = ModelTask(enabled=True, zh=ModelLang(enabled=False), en=ModelLang(threshold=1.0, veto_below=1.0))
    tagger = Tagger(book.model_copy(update={"model": ModelSettings(models=str(trained[0] / "models"), dimensions=task)}))
    text = "服务员 ok"  # a Chinese bare mention in a text with Latin letters: the English model leaves it alone
    assert tagger.tag_comment(text).pzb_tags == tagger.tag_comment(text, use_model=False).pzb_tags == [
        {"dimension": "assurance", "polarity": "neutral"}]
    assert tagger.tag_comment("the staff at the counter").pzb_tags == []  # an English one it vetoes


@pytest.mark.parametrize("text", [None, "", "   ", "😀🙄👍", "the waiter ignored us " * 3000, "装修漂亮 but payment declined 😀"])
def test_edge_texts_through_the_model(monkeypatch, trained, text):
    tagger = _tagger(monkeypatch, trained, threshold=0.5)
    m = tagger.tag_comment(text)
    for e in m.evidence:
        if e["start"] is not None:
            assert text[e["start"]:e["end"]] == e["span"]
    if not text or not text.strip() or text == "😀🙄👍":
        assert m.pzb_tags == [] and m.evidence == []


def test_halves_split_by_the_id_hash():
    records = [{"id": f"r{i}"} for i in range(400)]
    tuning, held = split_half(records, "tuning"), split_half(records, "held-out")
    assert len(tuning) + len(held) == 400 and 150 < len(tuning) < 250
    assert {r["id"] for r in tuning}.isdisjoint(r["id"] for r in held)
    assert half_of("tw-570306133677760513") == half_of("tw-570306133677760513")
    assert split_half(records, "all") == records
    with pytest.raises(ValueError, match="half must be one of"):
        split_half(records, "first")


# --- the shipped models ---------------------------------------------------------------------------
SHARED_TEXT = Path(__file__).parents[2] / ".." / "shared" / "data" / "text"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_shipped_models_may_ship_and_name_their_training_files(lang):
    folder = learned.MODELS_DIR / f"dimensions-{lang}"
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    assert card["shippable"] and card["task"] == "dimensions" and card["lang"] == lang
    assert all(s["shippable"] for s in card["sources"].values())
    assert set(card["sources"]) <= {"banking77", "mams-acsa", "asap"}
    assert {f["name"] for f in card["training_files"]} == {"en_train.jsonl", "zh_dev.jsonl"}
    assert json.loads((folder / "model.json").read_text(encoding="utf-8"))["weights_sha256"] == \
        __import__("hashlib").sha256((folder / "weights.npz").read_bytes()).hexdigest()
    for f in card["training_files"]:
        if (SHARED_TEXT / f["name"]).is_file():  # the shared data is optional
            assert __import__("hashlib").sha256((SHARED_TEXT / f["name"]).read_bytes()).hexdigest() == f["sha256"]


def test_base_playbook_uses_the_shipped_english_model():
    tagger = Tagger(load_playbook("base"))
    assert sorted(tagger.dimension_models) == ["en"]  # zh: switched off in base.yaml (measured, docs/tagging.md)
    text = "The food was fine but the service was terrible 😀 服务员很热情"
    m = tagger.tag_comment(text)
    model_rows = [e for e in m.evidence if e["rule"].startswith("model:dimensions:en:p=")]
    assert model_rows and all(text[e["start"]:e["end"]] == e["span"] for e in model_rows if e["start"] is not None)
    assert ("assurance", "positive") in {(t["dimension"], t["polarity"]) for t in m.pzb_tags}  # the zh rules
