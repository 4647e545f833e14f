"""The linear text model of the learned tagging layer (pipelines/tagging/linear.py), on small data."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipelines.tagging.linear import FORMAT, LinearTextModel, Settings, featurize

TEXTS = [
    ("the staff were rude and unhelpful", {"assurance"}),
    ("rude staff, never again", {"assurance"}),
    ("a very rude waiter", {"assurance"}),
    ("my card payment was declined", {"reliability"}),
    ("why was my payment declined twice", {"reliability"}),
    ("declined card at the shop", {"reliability"}),
    ("the room was dirty and the staff rude", {"tangibles", "assurance"}),
    ("dirty tables everywhere", {"tangibles"}),
    ("服务员态度很差", {"assurance"}),
    ("服务员态度不好", {"assurance"}),
    ("环境很脏", {"tangibles"}),
    ("环境脏乱", {"tangibles"}),
    ("how do I link my card", set()),
    ("what is the exchange rate", set()),
    ("今天天气不错", set()),
]
SMALL = Settings(char_en=(3, 4), min_df=1, c=2.0, seed=0)


@pytest.fixture(scope="module")
def model() -> LinearTextModel:
    texts, labels = zip(*TEXTS)
    extras = [[("rule:assurance:negative", t.index("rude"), t.index("rude") + 4)] if "rude" in t else None for t in texts]
    return LinearTextModel(SMALL).fit(list(texts), list(labels), extras=extras,
                                      labels=["assurance", "reliability", "tangibles"])


def test_features_carry_their_spans_in_both_languages_and_mixed_text():
    text = "The STAFF 服务员态度很差 but Wi-Fi ok 😀"
    features = featurize(text, SMALL, extra=[("ctx:touchpoint=teller", None, None)])
    names = {f.name for f in features}
    assert {"w:staff", "w:the staff", "c:sta", "w:服务员", "w:态度", "c:服务", "c:差", "w:wi fi"} <= names
    assert ("ctx:touchpoint=teller", None, None) == features[-1]
    for f in features[:-1]:
        piece = text[f.start:f.end].lower()
        words = f.name[2:].split(" ")
        if f.name.startswith("c:") or len(words) == 1 and "-" not in piece:
            assert piece == f.name[2:]
        else:  # a word pair, or a word split at a hyphen (wi-fi -> "wi fi")
            assert piece.startswith(words[0]) and piece.endswith(words[-1])

def test_fit_separates_the_labels_and_scores_unseen_text(model):
    proba = model.predict_proba(["rude staff", "my payment was declined", "环境很脏", "how do I top up"])
    assert proba.shape == (4, 3)
    a, r, t = (model.labels.index(x) for x in ("assurance", "reliability", "tangibles"))
    assert proba[0, a] > 0.5 > proba[0, r]
    assert proba[1, r] > 0.5 > proba[1, a]
    assert proba[2, t] > 0.5 > proba[2, r]
    assert proba[3].max() < max(proba[0, a], proba[1, r], proba[2, t])


def test_edge_texts_score_without_error(model):
    long_text = "the staff were rude " * 2000 + "服务员态度很差" * 500
    proba = model.predict_proba([None, "", "   ", "😀😀🙄", long_text, "payment declined 服务员态度很差"])
    assert proba.shape == (6, 3) and np.isfinite(proba).all()
    intercepts_only = 1 / (1 + np.exp(-model.intercepts))
    np.testing.assert_allclose(proba[0], intercepts_only, rtol=1e-6)
    np.testing.assert_allclose(proba[3], intercepts_only, rtol=1e-6)  # emoji: no feature
    assert model.predict_proba([]).shape == (0, 3)


def test_explain_spans_occur_in_the_text_and_the_score_is_the_probability(model):
    text = "Payment DECLINED and the waiter was rude, 环境很脏"
    extra = [("rule:assurance:negative", text.index("rude"), text.index("rude") + 4), ("ctx:direction=in", None, None)]
    explained = model.explain(text, extra, top=50)
    assert set(explained) == set(model.labels)
    decision = model.decision(text, extra)
    for j, label in enumerate(model.labels):
        entry = explained[label]
        assert entry["score"] == pytest.approx(1 / (1 + np.exp(-decision[j])))
        weights = [f["weight"] for f in entry["features"]]
        assert weights == sorted(weights, reverse=True) and all(w > 0 for w in weights)
        for f in entry["features"]:
            if f["start"] is not None:
                assert text[f["start"]:f["end"]] == f["span"]
    top = model.explain(text, extra, top=2)
    assert [f["feature"] for f in top["assurance"]["features"]][:1] == [explained["assurance"]["features"][0]["feature"]]
    assert len(top["reliability"]["features"]) == 2
    assert any(f["span"] and f["span"].lower() in "declined" for f in top["reliability"]["features"])


def test_the_fast_decision_sees_exactly_the_features_of_featurize(model):
    """Also when a text's own ids are remembered and it comes again with other extras (or none)."""
    extras = [[("rule:assurance:negative", 0, 1), ("ctx:unknown", None, None)], None, [("rule:reliability:negative", 0, 1)]]
    for extra in extras:
        for text in ["Payment DECLINED, the waiter was rude", "服务员态度很差 but rude staff", "rude rude RUDE", "", None]:
            ids, _, _ = model._terms(text, extra)
            assert model._ids(text, extra).tolist() == ids.tolist()
    remembered = set(model._text_ids)  # the module's model: other tests' texts are there too
    assert {"Payment DECLINED, the waiter was rude", "服务员态度很差 but rude staff", "rude rude RUDE"} <= remembered
    assert not {"", None} & remembered  # no ids to remember


def test_a_model_remembers_the_ids_of_the_texts_used_last_only(model, monkeypatch):
    from pipelines.tagging import linear

    monkeypatch.setattr(linear, "TEXT_IDS_ENTRIES", 2)
    fresh = linear.LinearTextModel(model.settings, model.labels, model.vocabulary, model.weights, model.intercepts)
    texts = ["the waiter was rude", "Payment DECLINED", "rude staff", "the waiter was rude"]
    decisions = [fresh.decision(t).tolist() for t in texts]
    assert list(fresh._text_ids) == ["rude staff", "the waiter was rude"]
    assert decisions == [model.decision(t).tolist() for t in texts]


def test_training_and_saving_are_deterministic(model, tmp_path):
    texts, labels = zip(*TEXTS)
    extras = [[("rule:assurance:negative", t.index("rude"), t.index("rude") + 4)] if "rude" in t else None for t in texts]
    again = LinearTextModel(SMALL).fit(list(texts), list(labels), extras=extras,
                                       labels=["assurance", "reliability", "tangibles"])
    model.save(tmp_path / "a")
    again.save(tmp_path / "b")
    for name in ("weights.npz", "model.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    meta = json.loads((tmp_path / "a" / "model.json").read_text(encoding="utf-8"))
    assert meta["format"] == FORMAT and meta["labels"] == ["assurance", "reliability", "tangibles"]


def test_load_needs_no_network_and_predicts_the_same(model, tmp_path, monkeypatch):
    model.save(tmp_path / "m")

    def no_network(*args, **kwargs):
        raise AssertionError("network used")

    monkeypatch.setattr(socket, "socket", no_network)
    loaded = LinearTextModel.load(tmp_path / "m")
    assert loaded.labels == model.labels and loaded.settings == model.settings
    texts = ["rude staff", "环境很脏", None]
    np.testing.assert_array_equal(loaded.predict_proba(texts), model.predict_proba(texts))


def test_load_and_predict_do_not_import_scikit_learn(model, tmp_path):
    model.save(tmp_path / "m")
    code = ("import sys; from pipelines.tagging.linear import LinearTextModel; "
            f"m = LinearTextModel.load({str(tmp_path / 'm')!r}); m.predict_proba(['rude staff', '环境很脏']); "
            "m.explain('rude staff'); print('sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "False"


def test_load_rejects_other_files(model, tmp_path):
    model.save(tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text(encoding="utf-8"))
    (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "format": "other/1"}), encoding="utf-8")
    with pytest.raises(ValueError, match="not a motpipe-linear-text-model/1 model"):
        LinearTextModel.load(tmp_path / "m")
    (tmp_path / "m" / "model.json").write_text(json.dumps({**meta, "labels": ["x"]}), encoding="utf-8")
    with pytest.raises(ValueError, match="do not match"):
        LinearTextModel.load(tmp_path / "m")


def test_fit_checks_its_inputs_and_handles_constant_labels():
    with pytest.raises(ValueError, match="same length"):
        LinearTextModel(SMALL).fit(["a b c"], [set(), {"x"}])
    m = LinearTextModel(SMALL).fit(["rude staff", "rude waiter", "nice room"], [{"x"}, {"x"}, {"x"}], labels=["x", "y"])
    proba = m.predict_proba(["anything"])
    assert proba[0, 0] > 0.99 and proba[0, 1] < 0.01
    with pytest.raises(ValueError, match="not fitted"):
        LinearTextModel(SMALL).save("/nonexistent")
