"""Tagging quality: hand-checked fixtures (tests/fixtures/tagging/), edge cases, evidence, eval-tagging."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.playbook import load_playbook
from pipelines.tagging import Tagger
from pipelines.tagging.evaluate import evaluate, read_gold
from pipelines.tagging.lang import language

FIXTURES = Path(__file__).parents[1] / "fixtures" / "tagging"


@pytest.fixture(scope="module")
def base() -> Tagger:
    return Tagger(load_playbook("base"))


def tags(m) -> list[tuple[str, str]]:
    return [(t["dimension"], t["polarity"]) for t in m.pzb_tags]


def rules(m) -> list[str]:
    return [e["rule"] for e in m.evidence]


def _records(name: str) -> list[dict]:
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if line]


# --- fixtures: each dimension in both languages, empathy and positive polarity, exact tags ---------
@pytest.mark.parametrize("record", _records("pzb_zh.jsonl") + _records("pzb_en.jsonl"), ids=lambda r: r["id"])
def test_pzb_fixture_exact_tags(base, record):
    m = base.tag_comment(record["text"])
    assert sorted(tags(m)) == sorted((lb["dimension"], lb["polarity"]) for lb in record["labels"]), rules(m)


def test_fixtures_cover_every_dimension_and_polarity_in_both_languages():
    for lang in ("zh", "en"):
        labels = {(lb["dimension"], lb["polarity"]) for r in _records(f"pzb_{lang}.jsonl") for lb in r["labels"]}
        for dim in ("reliability", "responsiveness", "assurance", "empathy", "tangibles"):
            assert (dim, "positive") in labels, (lang, dim)
        assert ("empathy", "negative") in labels


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_mot_step_fixtures(base, lang):
    records = _records(f"mot_steps_{lang}.jsonl")
    assert len(records) >= 150 and {r["mot_step"] for r in records} == {1, 2, 3, 4, 5}
    report = evaluate(base, records)["languages"][lang]
    assert report["mot_step"]["macro_f1"] >= 0.85, report["mot_step"]


# --- negation, contrast, intensifiers, opinion words, text durations ---------------------------------
@pytest.mark.parametrize(
    ("text", "expected", "rule"),
    [
        ("环境不脏", [("tangibles", "positive")], "cue:zh:脏+neg:不"),  # jieba word 不脏 read as 不 + 脏
        ("安排了座位", [("tangibles", "neutral")], "cue:zh:座位"),  # 排了 straddles 安排|了: no queue cue
        ("服务员一般", [("assurance", "neutral")], "cue:zh:服务员+op:一般"),
        ("服务员都很好", [("assurance", "positive")], "cue:zh:服务员+op:很好"),
        ("服务员不是很好", [("assurance", "negative")], "cue:zh:服务员+op:很好+neg:不是"),
        ("the crew was great", [("assurance", "positive")], "cue:en:crew+op:great"),
        ("the crew was not great", [("assurance", "negative")], "cue:en:crew+op:great+neg:not"),
        ("flight delayed again", [("reliability", "negative")], "cue:en:delayed"),
        ("they are delaying everything", [("reliability", "negative")], "cue:en:delay"),  # inflection of a listed base form
        ("we waited 3 hours for a seat", [("responsiveness", "negative")], "signal:text_wait>600"),
        ("排队等了两个小时", [("responsiveness", "negative")], "signal:text_wait>600"),
    ],
)
def test_modifiers(base, text, expected, rule):
    m = base.tag_comment(text)
    assert tags(m) == expected, rules(m)
    if rule:
        assert rule in rules(m)


# --- cues from SERVQUAL wording: willingness to help and reachability are responsiveness (Q10-Q13) ---
@pytest.mark.parametrize(
    ("text", "expected", "rule"),
    [
        ("she was not helpful", [("responsiveness", "negative")], "cue:en:not helpful"),
        # the agent is the subject of the cue, not an assurance mention of its own
        ("the gate agent was helpful", [("responsiveness", "positive")], "cue:en:helpful"),
        ("they refused to help us", [("responsiveness", "negative")], "cue:en:refused to help"),
        ("I can't reach anyone", [("responsiveness", "negative")], "cue:en:can't reach"),
        ("still no update on my refund", [("responsiveness", "negative")], "cue:en:no update"),
        ("the rep was helpful and polite", [("responsiveness", "positive"), ("assurance", "positive")],
         "cue:en:polite"),
        # "couldn't be more X" says "very X": a stop phrase, so the negator flips nothing
        ("they couldn't be more helpful", [("responsiveness", "positive")], "cue:en:helpful+int:more"),
        ("you couldn't be more unhelpful", [("responsiveness", "negative")], "cue:en:unhelpful+int:more"),
        ("not more helpful than last time", [("responsiveness", "negative")], "cue:en:helpful+int:more+neg:not"),
        ("no more delays please", [("reliability", "positive")], "cue:en:delays+int:more+neg:no"),
        # courtesy: "snapped at" someone is rude; seats "snapped up" are not
        ("the attendant snapped at me", [("assurance", "negative")], "cue:en:snapped at"),
        ("the cheap seats were snapped up", [("tangibles", "neutral")], "cue:en:seats"),
        # a failure of the system is reliability (Q7, right the first time); broken equipment is tangibles
        ("the app crashed twice", [("reliability", "negative")], "cue:en:crashed"),
        ("the wifi was not working", [("tangibles", "negative")], "cue:en:wifi+op:not working"),
        ("the TV didn't work", [("tangibles", "negative")], "cue:en:tv+op:didn't work"),
        ("the website is not working again", [], None),  # no aspect: "not working" alone names no dimension
        # recovery after a failure is responsiveness (domain primer); 补偿 likewise
        ("is my refund on its way?", [("responsiveness", "neutral")], "cue:en:refund"),
        ("我们会给您补偿", [("responsiveness", "neutral")], "cue:zh:补偿"),
    ],
)
def test_servqual_wording_cues(base, text, expected, rule):
    m = base.tag_comment(text)
    assert tags(m) == expected, rules(m)
    assert rule is None or rule in rules(m)


def test_airline_disruption_cues():
    airline = Tagger(load_playbook("airline"))
    m = airline.tag_comment("Another gate change, then denied boarding")
    assert tags(m) == [("reliability", "negative")]
    assert m.evidence == [
        {"tag": "reliability:negative", "rule": "cue:en:gate change", "field": "comment", "span": "gate change",
         "start": 8, "end": 19},
        {"tag": "reliability:negative", "rule": "cue:en:denied boarding", "field": "comment",
         "span": "denied boarding", "start": 26, "end": 41},
    ]
    assert tags(airline.tag_comment("I changed the gate code")) == []  # not the phrase "gate change"


def test_contrast_later_clause_decides_polarity(base):
    m = base.tag_comment("环境很干净，但是上菜太慢了")
    assert tags(m) == [("responsiveness", "negative"), ("tangibles", "positive")]
    assert m.polarity == "negative"
    m = base.tag_comment("上菜有点慢，不过服务员很热情")
    assert tags(m) == [("responsiveness", "negative"), ("assurance", "positive")]
    assert m.polarity == "positive"
    m = base.tag_comment("slow check-in but the staff were lovely and helpful")
    assert m.polarity == "positive"


def test_contrast_ends_negation_scope(base):
    m = base.tag_comment("not cheap but clean")
    assert tags(m) == [("tangibles", "positive")]


# --- languages, empty, long, emoji, full-width ------------------------------------------------------
def test_language_detection():
    assert [language(t) for t in ("您好", "hello", "您好 hello", "123 !!", None)] == ["zh", "en", "mixed", None, None]


def test_mixed_language_text(base):
    text = "柜员很专业 but the lobby was dirty"
    m = base.tag_moment(None, text, None)
    assert tags(m) == [("assurance", "positive"), ("tangibles", "negative")]
    assert rules(m) == ["cue:zh:很专业", "cue:en:dirty"]


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t", "😀👍", "，。！？", "12345"])
def test_empty_or_cueless_text(base, text):
    m = base.tag_moment(None, text, None)
    assert (m.mot_step, m.pzb_tags, m.polarity, m.evidence) == (None, [], "neutral", [])


def test_very_long_text(base):
    text = "服务员很热情，" * 5000 + "the lobby was dirty"
    m = base.tag_comment(text)
    assert tags(m) == [("assurance", "positive"), ("tangibles", "negative")]
    assert rules(m).count("cue:zh:服务员很热情") == 1  # one evidence entry per (tag, rule)
    for e in m.evidence:
        assert text[e["start"]:e["end"]] == e["span"]


def test_emoji_and_full_width_punctuation(base):
    m = base.tag_comment("服务很专业👍！！环境不干净😡，")
    assert tags(m) == [("assurance", "positive"), ("tangibles", "negative")]
    m = base.tag_comment("没有！服务专业")  # negation stops at the full-width !
    assert tags(m) == [("assurance", "positive")]
    m = base.tag_comment("ＲＵＤＥ staff 😡")  # full-width letters fold to ASCII, offsets unchanged
    assert tags(m) == [("assurance", "negative")]
    assert m.evidence[0]["span"] == "ＲＵＤＥ"


# --- evidence ------------------------------------------------------------------------------------
def test_evidence_spans_occur_in_the_redacted_text(base):
    from pipelines.pii import mask_column

    texts = [r["text"] for r in _records("pzb_zh.jsonl") + _records("pzb_en.jsonl") + _records("mot_steps_zh.jsonl")
             + _records("mot_steps_en.jsonl")]
    texts += ["请拨打13812345678联系柜员，他很专业", "email me at a.b@example.com, the crew was rude"]
    masked = mask_column(pa.array(texts, pa.string()))
    masked = masked[0] if isinstance(masked, tuple) else masked
    table = pa.table({"touchpoint": [None] * len(texts), "text": masked, "wait_s": [None] * len(texts)})
    out = base.tag_events(table)
    redacted = table.column("text").to_pylist()
    assert "13812345678" not in redacted[-2]
    tagged = 0
    for text, row_tags, evidence, step in zip(redacted, out["pzb_tags"].to_pylist(), out["evidence"].to_pylist(),
                                              out["mot_step"].to_pylist()):
        names = {f"{t['dimension']}:{t['polarity']}" for t in row_tags} | ({f"mot_step={step}"} if step else set())
        assert names <= {e["tag"] for e in evidence}
        for e in evidence:
            if e["field"] == "text":
                assert text[e["start"]:e["end"]] == e["span"]
                tagged += 1
    assert tagged > 300


# --- eval-tagging ----------------------------------------------------------------------------------
def test_evaluate_counts(base, tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"id": "a", "lang": "zh", "text": "服务很专业", "labels": [{"dimension": "assurance", "polarity": "positive"}]},
        {"id": "b", "lang": "zh", "text": "上菜很慢", "labels": [{"dimension": "assurance", "polarity": "negative"}]},
        {"id": "c", "lang": "en", "text": "could you tell me your name?", "mot_step": 2},
    ]), encoding="utf-8")
    report = evaluate(base, read_gold([gold]))
    zh = report["languages"]["zh"]
    assert zh["dimension"]["per_class"]["assurance"] | {} == {"tp": 1, "fp": 0, "fn": 1, "precision": 1.0,
                                                                 "recall": 0.5, "f1": 0.6667}
    assert zh["dimension_polarity"]["per_class"]["assurance:negative"]["fn"] == 1
    assert report["languages"]["en"]["mot_step"]["macro_f1"] == 1.0
    result = CliRunner().invoke(app, ["eval-tagging", "--gold", str(gold), "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r.json").read_text())["languages"]["zh"]["dimension"]["macro_f1"] == 0.6667
