"""The MOT-step model beside the rules: training (train-tagger --task mot_steps), joining, evidence, customer
speech, thresholds and veto from the playbook, Chinese features, the shipped model and its card."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.playbook import ModelLang, ModelSettings, ModelTask, load_playbook
from pipelines.tagging import Tagger, learned
from pipelines.tagging.learned import MODELS_DIR, weak_step_cue, with_mot_model
from pipelines.tagging.linear import LinearTextModel, Settings
from pipelines.tagging.training import train_and_write

SMALL = Settings(char_en=(3, 4), min_df=1, c=2.0)
EN = [  # (text, steps, company): no cue of the base lexicon in the step-2 and step-5 texts
    ("please send us an email with your order number", [2], "a"),
    ("send us an email with the account name", [2], "a"),
    ("an email with your serial number please", [2], "a"),
    ("we have passed your comments to our store team", [5], "a"),
    ("your comments went to our store team", [5], "a"),
    ("install the latest update from the store", [3], "a"),
    ("please send us an email with the error", [2], "b"),
    ("email us the serial number of the device", [2], "b"),
    ("we shared your comments with the store team", [5], "b"),
    ("our store team has your comments now", [5], "b"),
    ("install the update and restart the app", [3], "b"),
    ("the update fixes this, install it today", [3], "b"),
]
ZH = [  # a small Chinese gold file: the mechanism, not a figure
    ("您好，请问您办理什么业务", [1, 2], "bank"), ("请问您的卡号是多少", [2], "bank"), ("您的卡号后四位是多少", [2], "bank"),
    ("给您办好了，请收好", [3, 4], "bank"), ("已经为您办理完成", [3], "bank"), ("下周给您打电话回访", [5], "bank"),
    ("您好，欢迎光临", [1], "shop"), ("您要的尺码是多少", [2], "shop"), ("尺码和颜色您看一下", [2], "shop"),
    ("这款给您包好了", [3], "shop"), ("到货后短信通知您", [5], "shop"), ("过两天给您打电话", [5], "shop"),
]


def _gold(path: Path, rows, lang: str) -> Path:
    path.write_text("".join(json.dumps({"id": f"{lang}{i}", "text": t, "mot_steps": s, "company": c, "source": "mine"},
                                       ensure_ascii=False) + "\n" for i, (t, s, c) in enumerate(rows)), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    base = tmp_path_factory.mktemp("mot")
    files = [_gold(base / "en.jsonl", EN, "en"), _gold(base / "zh.jsonl", ZH, "zh")]
    cards = train_and_write("mot_steps", files, None, Tagger(load_playbook("base")), SMALL, base / "models",
                            "2026-01-01", declared={"mine": "CC0-1.0"}, group_by="company")
    return base, files, cards


def _tagger(monkeypatch, trained, playbook="chat_support", **lang_settings) -> Tagger:
    monkeypatch.setattr(learned, "MODELS_DIR", trained[0] / "models")
    book = load_playbook(playbook)
    task = ModelTask(enabled=True, zh=ModelLang(**lang_settings), en=ModelLang(**lang_settings))
    return Tagger(book.model_copy(update={"model": ModelSettings(mot_steps=task)}))


def test_training_mot_steps_per_language_with_grouped_cv(trained, tmp_path):
    base, files, cards = trained
    assert [c["path"] for c in cards] == ["mot_steps-en", "mot_steps-zh"]
    en, zh = cards
    assert en["labels"] == [f"mot_step={s}" for s in (2, 3, 5)] and en["training_files"][0]["records"] == 12
    cv = en["cross_validation"]
    assert cv["group_by"] == "company" and sorted(cv["groups"]) == ["a", "b"] and cv["groups"]["a"]["trained_on"] == 6
    joined = cv["pooled_rules_and_model"]["all"]
    assert joined["records"] == 12 and 0 <= joined["primary_in_gold"] <= 1 and "mot_steps" in joined
    again = train_and_write("mot_steps", files, ["en"], Tagger(load_playbook("base")), SMALL, tmp_path, "2026-01-01",
                            declared={"mine": "CC0-1.0"}, group_by="company")
    for name in ("weights.npz", "model.json", "card.json", "CARD.md"):  # same files, same bytes
        assert (tmp_path / "mot_steps-en" / name).read_bytes() == (base / "models" / "mot_steps-en" / name).read_bytes()
    assert "Rules + model" in (tmp_path / "mot_steps-en" / "CARD.md").read_text(encoding="utf-8") and again[0] == en


def test_chinese_features_jieba_words_and_characters(trained):
    model = LinearTextModel.load(trained[0] / "models" / "mot_steps-zh")
    assert {"w:卡号", "w:回访", "c:卡号", "c:尺"} <= set(model.vocabulary)
    text = "麻烦您把卡号告诉我"
    explained = model.explain(text, top=3)["mot_step=2"]
    assert explained["score"] > model.explain(text, top=3)["mot_step=5"]["score"]
    for f in explained["features"]:
        assert text[f["start"]:f["end"]] == f["span"]


def test_the_model_adds_steps_the_rules_miss_with_evidence(monkeypatch, trained):
    tagger = _tagger(monkeypatch, trained, threshold=0.5)
    text = "Sorry to hear that! Please send us an email with your order number."
    rules = tagger.tag_moment("agent_reply", text, None, use_model=False)
    m = tagger.tag_moment("agent_reply", text, None)
    assert rules.mot_steps == [1] and 2 in m.mot_steps and 1 in m.mot_steps
    assert (m.mot_step, m.mot_step_source) == (1, "text")  # the rules' primary step stays while it is performed
    rows = [e for e in m.evidence if e["tag"] == "mot_step=2"]
    assert rows and all(e["rule"].startswith("model:mot_steps:en:p=") and text[e["start"]:e["end"]] == e["span"]
                        for e in rows)
    alone = tagger.tag_moment("agent_reply", "An email with the serial number would help", None)
    assert (alone.mot_step, alone.mot_step_source) == (2, "model")


def test_customer_speech_gets_no_step_from_the_model_either(monkeypatch, trained):
    tagger = _tagger(monkeypatch, trained, threshold=0.0)  # the model would add every step it knows
    text = "please send us an email with your order number"
    assert tagger.tag_moment("customer_message", text, None).mot_steps == []
    assert tagger.tag_moment("customer_message", text, None).mot_step is None
    assert tagger.tag_moment("agent_reply", text, None).mot_steps == [2, 3, 5]


def test_thresholds_and_veto_from_the_playbook(monkeypatch, trained):
    text = "Please send us an email with your order number"
    assert _tagger(monkeypatch, trained, threshold=1.0).tag_moment(None, text, None).mot_steps == []
    assert _tagger(monkeypatch, trained, threshold=0.5, thresholds={"mot_step=2": 1.0}).tag_moment(
        None, text, None).mot_steps == []
    assert _tagger(monkeypatch, trained, threshold=0.5).tag_moment(None, text, None).mot_steps == [2]
    strict = _tagger(monkeypatch, trained, threshold=1.0, veto_below=1.0)
    # `restart` (one word) is a weak step-3 cue: vetoed below 1.0; `hi` stays, this model has no step-1 label
    assert strict.tag_moment(None, "Hi, restart it", None, use_model=False).mot_steps == [1, 3]
    assert strict.tag_moment(None, "Hi, restart it", None).mot_steps == [1]
    assert strict.tag_moment(None, "Hi, please try these steps", None).mot_steps == [1, 3]  # several words: certain
    assert weak_step_cue("cue:en:hi") and not weak_step_cue("cue:en:sorry to hear")
    assert weak_step_cue("cue:zh:您好") and not weak_step_cue("cue:zh:有什么可以帮您")


@pytest.mark.parametrize("text", [None, "", "   ", "😀🙄👍", "please send us an email " * 3000,
                                  "您好 please send us an email 😀 下周给您打电话回访"])
def test_edge_texts_through_the_mot_model(monkeypatch, trained, text):
    m = _tagger(monkeypatch, trained, threshold=0.5).tag_moment("agent_reply", text, None)
    for e in m.evidence:
        if e["start"] is not None:
            assert text[e["start"]:e["end"]] == e["span"]
    assert (m.mot_step is None) == (m.mot_steps == []) and (m.mot_step is None or m.mot_step in m.mot_steps)
    if not text or not text.strip() or text == "😀🙄👍":
        assert m.mot_steps == [] and [e["rule"] for e in m.evidence] == ["touchpoint:agent_reply"]  # its ABC facet


def test_train_tagger_mot_steps_command_with_split(tmp_path):
    gold = _gold(tmp_path / "en.jsonl", EN, "en")
    args = ["train-tagger", "--task", "mot_steps", "--gold", str(gold), "--out", str(tmp_path / "m"), "--date",
            "2026-01-01", "--min-df", "1", "--licence", "mine=CC0-1.0", "--group-by", "company", "--split", "dev",
            "--no-cv"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "m" / "mot_steps-en" / "card.json").read_text(encoding="utf-8"))
    assert card["split"] == "dev" and card["training_files"][0]["records"] == 6  # one company of the two is held out
    assert card["command"].startswith("motpipe train-tagger --task mot_steps --gold en.jsonl --group-by company")


SHIPPED = MODELS_DIR / "mot_steps-en"


def test_the_shipped_model_card():
    card = json.loads((SHIPPED / "card.json").read_text(encoding="utf-8"))
    assert card["training_files"] == [{"name": "mot_dev.jsonl", "records": 600,
                                       "sha256": "c468ba96f07343c77f0f308c825740e89889a55824ad234ab71d8f74a31da3a4"}]
    assert card["shippable"] and list(card["sources"]) == ["ibm-twitter-customer-care"]
    assert card["sources"]["ibm-twitter-customer-care"]["licence"].startswith("Apache-2.0")
    assert card["cross_validation"]["group_by"] == "company" and len(card["cross_validation"]["groups"]) == 26
    model = LinearTextModel.load(SHIPPED)  # numpy + json only
    assert model.labels == [f"mot_step={s}" for s in range(1, 6)]


def test_chat_support_uses_the_shipped_model():
    tagger = Tagger(load_playbook("chat_support"))
    assert set(tagger.mot_models) == {"en"}
    text = "Please start your system in safe mode and rebuild the database."  # no cue of the lexicon
    assert tagger.tag_moment("agent_reply", text, None, use_model=False).mot_steps == []
    m = tagger.tag_moment("agent_reply", text, None)
    assert m.mot_steps and m.mot_step_source == "model"
    rows = [e for e in m.evidence if e["tag"].startswith("mot_step=")]
    assert rows and all(e["rule"].startswith("model:mot_steps:en:p=") and text[e["start"]:e["end"]] == e["span"]
                        for e in rows)
    assert tagger.tag_moment("customer_message", "Please start your system in safe mode.", None).mot_steps == []
    assert Tagger(load_playbook("bank_branch")).mot_models == {}  # off unless a playbook turns it on
