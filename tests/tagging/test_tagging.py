"""Tests of the text/touchpoint tagger (pipelines/tagging.py) and the shared cue lexicon."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.ingest.contract import DIMENSIONS
from pipelines.playbook import list_playbooks, load_playbook
from pipelines.tagging import MomentTags, Tagger
from schemas.tables import EVENTS, FEEDBACK

DEV_DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "text"
BASELINE_MACRO_F1 = {"zh": 0.849, "en": 0.413}  # keyword baseline from DEV_DATA/README.md
DEV_PLAYBOOK = {"zh": "base", "en": "airline"}  # Dianping restaurant reviews / airline tweets


@pytest.fixture(scope="module")
def bank() -> Tagger:
    return Tagger(load_playbook("bank_branch"))


def tags(moment: MomentTags) -> list[tuple[str, str]]:
    return [(t["dimension"], t["polarity"]) for t in moment.pzb_tags]


def rules(moment: MomentTags) -> list[str]:
    return [e["rule"] for e in moment.evidence]


# --- MOT step ------------------------------------------------------------------------------------
def test_touchpoint_map_hit(bank):
    m = bank.tag_moment("greeting", None, None)
    assert (m.mot_step, m.mot_step_source, m.abc_facet) == (1, "touchpoint", "behaviour")
    assert tags(m) == [("assurance", "neutral"), ("empathy", "neutral")]
    assert m.polarity == "neutral"
    assert m.evidence == [
        {"tag": "mot_step=1", "rule": "touchpoint:greeting", "field": "touchpoint", "span": None, "start": None, "end": None},
        {"tag": "abc=behaviour", "rule": "touchpoint:greeting", "field": "touchpoint", "span": None, "start": None, "end": None},
        {"tag": "assurance:neutral", "rule": "touchpoint:greeting", "field": "touchpoint", "span": None, "start": None, "end": None},
        {"tag": "empathy:neutral", "rule": "touchpoint:greeting", "field": "touchpoint", "span": None, "start": None, "end": None},
    ]


def test_touchpoint_step_wins_over_text_cue(bank):
    m = bank.tag_moment("callback", "您好，请问还有什么问题吗", None)
    assert (m.mot_step, m.mot_step_source) == (5, "touchpoint")
    assert "cue:zh:您好" not in rules(m)


def test_unmapped_touchpoint_zh_text_cue(bank):
    m = bank.tag_moment("lobby_robot", "您好，欢迎光临", None)
    assert (m.mot_step, m.mot_step_source, m.abc_facet, m.pzb_tags) == (1, "text", None, [])
    assert m.evidence == [{"tag": "mot_step=1", "rule": "cue:zh:您好", "field": "text", "span": "您好", "start": 0, "end": 2}]


def test_unmapped_touchpoint_en_text_cue(bank):
    m = bank.tag_moment("chatbot", "Hi! How can I help you today?", None)
    assert (m.mot_step, m.mot_step_source) == (1, "text")
    # one evidence entry per step: its first cue (`hi` since base 1.3.0; `how can i help` is step 1 too)
    assert m.evidence == [{"tag": "mot_step=1", "rule": "cue:en:hi", "field": "text", "span": "Hi", "start": 0, "end": 2}]


@pytest.mark.parametrize(
    ("text", "step", "rule"),
    [
        ("您好", 1, "cue:zh:您好"),
        ("欢迎光临本店", 1, "cue:zh:欢迎光临"),
        ("how can I help?", 1, "cue:en:how can i help"),
        ("请问需要什么帮助", 2, "cue:zh:请问"),
        ("Could you tell me the flight number?", 2, "cue:en:could you tell me"),
        ("抱歉让您久等了，我马上帮您", 1, "cue:zh:抱歉让您久等了"),
        ("我们下周会回访", 5, "cue:zh:回访"),
        ("Thanks, we'll call you back tomorrow", 5, "cue:en:we'll call you back"),
    ],
)
def test_step_cues(bank, text, step, rule):
    m = bank.tag_moment(None, text, None)
    assert (m.mot_step, m.mot_step_source) == (step, "text")
    assert m.evidence[0]["rule"] == rule


def test_several_step_cues_earliest_wins(bank):
    m = bank.tag_moment(None, "请问您贵姓？您好", None)
    assert m.mot_step == 2  # 请问 (step 2) comes before 您好 (step 1)
    assert m.mot_steps == [1, 2]


def test_every_step_performed_has_evidence_and_the_primary_is_the_highest_score(bank):
    text = "Hello! I'm sorry to keep you waiting. Just to confirm, is there anything else I can help with?"
    m = bank.tag_moment(None, text, None)
    assert m.mot_steps == [1, 4]
    steps = [(e["tag"], e["rule"], e["span"]) for e in m.evidence if e["tag"].startswith("mot_step=")]
    assert steps == [("mot_step=1", "cue:en:hello", "Hello"), ("mot_step=4", "cue:en:just to confirm", "Just to confirm")]
    # step 1: hello + sorry to keep you waiting (5 + 24 characters); step 4: just to confirm + is there anything else
    # (15 + 21): 29 < 36, so the review is the primary step
    assert (m.mot_step, m.mot_step_source) == (4, "text")
    for e in m.evidence:
        assert text[e["start"]:e["end"]] == e["span"]


def test_customer_speech_gets_no_mot_step_from_its_words():
    chat = Tagger(load_playbook("chat_support"))
    said = "Hello, how can I help? Just to confirm, could you tell me more?"
    customer, agent = chat.tag_moment("customer_message", said, None), chat.tag_moment("agent_reply", said, None)
    assert (customer.mot_step, customer.mot_steps, customer.mot_step_source) == (None, [], None)
    assert not [e for e in customer.evidence if e["tag"].startswith("mot_step")]
    assert agent.mot_steps == [1, 2, 4] and agent.mot_step_source == "text"
    # the base lexicon's default applies to every built-in playbook; a touchpoint map entry still gives its step
    assert Tagger(load_playbook("bank_branch")).tag_moment("customer_message", said, None).mot_step is None
    assert Tagger(load_playbook("bank_branch")).tag_moment("complaint", said, None).mot_step == 2


def test_a_playbook_says_which_touchpoints_are_customer_speech(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("name: p\nversion: '1'\nextends: base\nmot_text: {customer_touchpoints: [customer_post]}\n"
                    "touchpoints: {customer_message: {speech: staff}, kiosk: {speech: customer}}\n")
    tagger = Tagger(load_playbook(str(path)))
    assert tagger.playbook.mot_text.customer_touchpoints == ["customer_message", "customer_post"]  # lists merge
    said = "Hello, how can I help?"
    assert [tagger.tag_moment(tp, said, None).mot_step for tp in ("customer_post", "kiosk", "customer_message", None)] \
        == [None, None, 1, 1]  # a touchpoint's own `speech:` wins over the list



def test_a_playbook_file_is_parsed_once_until_it_changes_and_callers_get_their_own_copy(tmp_path, monkeypatch):
    import yaml

    from pipelines import playbook as playbook_module

    path = tmp_path / "p.yaml"
    path.write_text("name: p\nversion: '1'\nextends: base\ntouchpoints: {kiosk: {speech: customer}}\n")
    parsed = []
    real_safe_load = yaml.safe_load
    monkeypatch.setattr(playbook_module.yaml, "safe_load", lambda text: parsed.append(text) or real_safe_load(text))
    first = playbook_module.read_yaml(path)
    first["touchpoints"]["kiosk"]["speech"] = "staff"  # a caller's change must not reach the next caller
    assert playbook_module.read_yaml(path)["touchpoints"]["kiosk"] == {"speech": "customer"}
    assert len(parsed) == 1
    path.write_text("name: p\nversion: '2'\nextends: base\n")  # a new size: parsed again
    assert playbook_module.read_yaml(path)["version"] == "2" and len(parsed) == 2
    assert load_playbook(str(path)).version == "2"

def test_acknowledging_the_wait_is_empathy_not_a_slow_service_cue(bank):
    m = bank.tag_moment(None, "抱歉让您久等了", None)
    assert m.mot_step == 1
    assert tags(m) == [("empathy", "positive")]
    assert rules(m) == ["cue:zh:抱歉让您久等了", "cue:zh:抱歉让您久等了"]


# --- PZB cues ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("等了好久才办完", [("responsiveness", "negative")]),
        ("久等", [("responsiveness", "negative")]),
        ("排队的人太多", [("responsiveness", "negative")]),
        ("the line was so slow", [("responsiveness", "negative")]),
        ("柜员很专业", [("assurance", "positive")]),
        ("非常礼貌", [("assurance", "positive")]),
        ("the teller was rude", [("assurance", "negative")]),
        ("大厅环境一般", [("tangibles", "neutral")]),
        ("网点的环境", [("tangibles", "neutral")]),
        ("很干净", [("tangibles", "positive")]),
        ("the bathroom was dirty", [("tangibles", "negative")]),
        ("他们的承诺", [("reliability", "neutral")]),
        ("存款单又出错了", [("reliability", "negative")]),
        ("they made a mistake on my statement", [("reliability", "negative")]),
        ("她很关心我们", [("empathy", "positive")]),
        ("我很体谅", [("empathy", "positive")]),
        ("they didn't care", [("empathy", "negative")]),
    ],
)
def test_pzb_cues(bank, text, expected):
    m = bank.tag_comment(text)
    assert tags(m) == expected
    assert m.polarity == expected[0][1]
    assert (m.mot_step, m.abc_facet) == (None, None)


def test_tags_sorted_by_dimension_and_unique(bank):
    m = bank.tag_comment("环境很干净，但是排队太久，柜员不耐烦，柜员不耐烦")
    assert tags(m) == [("responsiveness", "negative"), ("assurance", "negative"), ("tangibles", "positive")]
    assert [t["dimension"] for t in m.pzb_tags] == sorted((t["dimension"] for t in m.pzb_tags), key=DIMENSIONS.index)
    assert m.polarity == "negative"
    assert rules(m).count("cue:zh:不耐烦") == 1  # one evidence entry per (tag, rule)


def test_mixed_polarities_of_one_dimension_are_kept(bank):
    m = bank.tag_comment("环境干净但是很吵")
    assert tags(m) == [("tangibles", "positive"), ("tangibles", "negative")]


def test_polar_tag_replaces_neutral_of_same_dimension(bank):
    m = bank.tag_moment("branch_entry", "大厅很干净", None)  # touchpoint gives tangibles neutral
    assert tags(m) == [("tangibles", "positive")]
    assert [e["tag"] for e in m.evidence] == ["mot_step=1", "abc=appearance", "tangibles:positive"]


# --- negation ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected", "rule"),
    [
        ("服务不专业", ("assurance", "negative"), "cue:zh:不专业"),  # a cue that holds its own negation
        ("服务不够专业", ("assurance", "negative"), "cue:zh:专业+neg:不够"),
        ("服务不太专业", ("assurance", "negative"), "cue:zh:专业+neg:不太"),
        ("柜员不是很专业", ("assurance", "negative"), "cue:zh:很专业+neg:不是"),  # jieba word 不是
        ("今天不用排队", ("responsiveness", "positive"), "cue:zh:不用排队"),
        ("今天不需要排队", ("responsiveness", "positive"), "cue:zh:排队+neg:不"),
        ("没有久等", ("responsiveness", "positive"), "cue:zh:久等+neg:没有"),
        ("他很不耐烦", ("assurance", "negative"), "cue:zh:不耐烦+int:很"),  # intensifier recorded
        ("服务特别专业", ("assurance", "positive"), "cue:zh:专业+int:特别"),  # 别 in 特别 is not a negator
        ("味道不错，很专业", ("assurance", "positive"), "cue:zh:很专业"),  # nor 不 in 不错
        ("没排队，服务专业", ("assurance", "positive"), "cue:zh:专业"),  # negation stops at the comma
        ("the staff were not rude", ("assurance", "positive"), "cue:en:rude+neg:not"),
        ("the agent wasn't rude at all", ("assurance", "positive"), "cue:en:rude+neg:n't"),
        ("They didn't care", ("empathy", "negative"), "cue:en:didn't care"),
        ("they didn’t care", ("empathy", "negative"), "cue:en:didn't care"),  # curly apostrophe
        ("she was not helpful", ("responsiveness", "negative"), "cue:en:not helpful"),  # SERVQUAL Q12
        ("we never waited", ("responsiveness", "positive"), "cue:en:waited+neg:never"),
        ("not only polite but fast", ("responsiveness", "positive"), "cue:en:fast"),
    ],
)
def test_negation(bank, text, expected, rule):
    m = bank.tag_comment(text)
    assert expected in tags(m)
    assert rule in rules(m)


def test_negation_leaves_neutral_cues_neutral(bank):
    m = bank.tag_comment("没有环境")
    assert tags(m) == [("tangibles", "neutral")]
    assert rules(m) == ["cue:zh:环境"]


def test_not_only_is_not_a_negation(bank):
    m = bank.tag_comment("not only polite but fast")
    assert tags(m) == [("responsiveness", "positive"), ("assurance", "positive")]


# --- English matching ----------------------------------------------------------------------------
def test_english_word_boundaries(bank):
    assert bank.tag_comment("a prudent choice").pzb_tags == []
    assert tags(bank.tag_comment("so RUDE!")) == [("assurance", "negative")]
    assert bank.tag_comment("ungratefully slowish").pzb_tags == []  # no stemming: only listed forms
    assert tags(bank.tag_comment("#rude")) == [("assurance", "negative")]


def test_evidence_offsets_point_at_the_span(bank):
    text = "Hello! 您好，柜员很专业 but the line was slow and they didn't care, 环境不干净。"
    m = bank.tag_moment(None, text, None)
    text_evidence = [e for e in m.evidence if e["field"] == "text"]
    assert len(text_evidence) >= 5
    for e in text_evidence:
        assert text[e["start"]:e["end"]] == e["span"]
    assert m.evidence[0] == {"tag": "mot_step=1", "rule": "cue:en:hello", "field": "text", "span": "Hello", "start": 0, "end": 5}


def test_every_tag_has_evidence(bank):
    m = bank.tag_moment("greeting", "柜员态度很好但排队太久，the lobby was dirty", 2000)
    tag_names = {f"{t['dimension']}:{t['polarity']}" for t in m.pzb_tags} | {f"mot_step={m.mot_step}", f"abc={m.abc_facet}"}
    assert tag_names == {e["tag"] for e in m.evidence}


# --- wait signal ---------------------------------------------------------------------------------
def test_long_wait_threshold_boundary(bank):
    assert bank.playbook.thresholds.long_wait_s == 900
    assert tags(bank.tag_moment(None, None, 900)) == []  # == threshold is not long
    long = bank.tag_moment(None, None, 900.5)
    assert tags(long) == [("responsiveness", "negative")]
    assert long.evidence == [{"tag": "responsiveness:negative", "rule": "signal:wait_s>900", "field": "wait_s",
                              "span": None, "start": None, "end": None}]


def test_short_wait_boundary(bank):
    assert tags(bank.tag_moment(None, None, 180)) == [("responsiveness", "positive")]
    assert rules(bank.tag_moment(None, None, 180)) == ["signal:wait_s<=180"]
    assert tags(bank.tag_moment(None, None, 181)) == []
    assert tags(bank.tag_moment(None, None, float("nan"))) == []


def test_wait_signal_replaces_touchpoint_neutral(bank):
    m = bank.tag_moment("queue_ticket", None, 1800)
    assert tags(m) == [("responsiveness", "negative"), ("tangibles", "neutral")]
    assert m.polarity == "negative"


def test_abc_from_text_when_touchpoint_has_none(bank):
    m = bank.tag_moment("counter_service", "柜员面带微笑，着装整齐", None)
    assert m.abc_facet == "behaviour"  # 微笑 comes before 着装
    assert {"tag": "abc=behaviour", "rule": "cue:zh:微笑", "field": "text", "span": "微笑", "start": 4, "end": 6} in m.evidence


# --- Arrow batches -------------------------------------------------------------------------------
def test_tag_events_on_a_table(bank):
    table = pa.table({
        "event_id": ["e1", "e2", "e3", "e4", "e5"],
        "touchpoint": ["greeting", "lobby_robot", None, "greeting", "farewell"],
        "text": [None, "您好，欢迎光临", None, None, "   "],
        "wait_s": [1000.0, None, None, 1000.0, 10.0],
    })
    out = bank.tag_events(table)
    assert set(out) == {"mot_step", "mot_step_name", "mot_step_source", "mot_steps", "abc_facet", "pzb_tags", "polarity",
                        "evidence"}
    for name, array in out.items():
        assert array.type == EVENTS.field(name).type, name
        assert len(array) == table.num_rows
    greeting_long = {
        "pzb_tags": [{"dimension": "responsiveness", "polarity": "negative"},
                     {"dimension": "assurance", "polarity": "neutral"}, {"dimension": "empathy", "polarity": "neutral"}],
        "evidence": [
            {"tag": "mot_step=1", "rule": "touchpoint:greeting", "field": "touchpoint", "span": None, "start": None, "end": None},
            {"tag": "abc=behaviour", "rule": "touchpoint:greeting", "field": "touchpoint", "span": None, "start": None, "end": None},
            {"tag": "responsiveness:negative", "rule": "signal:wait_s>900", "field": "wait_s", "span": None, "start": None, "end": None},
            {"tag": "assurance:neutral", "rule": "touchpoint:greeting", "field": "touchpoint", "span": None, "start": None, "end": None},
            {"tag": "empathy:neutral", "rule": "touchpoint:greeting", "field": "touchpoint", "span": None, "start": None, "end": None},
        ],
    }
    assert out["mot_step"].to_pylist() == [1, 1, None, 1, 4]
    assert out["mot_step_name"].to_pylist() == ["set_the_tone", "set_the_tone", None, "set_the_tone", "review"]
    assert out["mot_step_source"].to_pylist() == ["touchpoint", "text", None, "touchpoint", "touchpoint"]
    assert out["mot_steps"].to_pylist() == [[1], [1], [], [1], [4]]
    assert out["abc_facet"].to_pylist() == ["behaviour", None, None, "behaviour", "behaviour"]
    assert out["polarity"].to_pylist() == ["negative", "neutral", "neutral", "negative", "positive"]
    assert out["pzb_tags"].to_pylist() == [
        greeting_long["pzb_tags"], [], [], greeting_long["pzb_tags"],
        [{"dimension": "responsiveness", "polarity": "positive"}, {"dimension": "empathy", "polarity": "neutral"}],
    ]
    assert out["evidence"].to_pylist()[0] == greeting_long["evidence"]
    assert out["evidence"].to_pylist()[1] == [
        {"tag": "mot_step=1", "rule": "cue:zh:您好", "field": "text", "span": "您好", "start": 0, "end": 2}]
    assert out["evidence"].to_pylist()[2] == []
    assert out["evidence"].to_pylist()[3] == greeting_long["evidence"]
    assert [e["rule"] for e in out["evidence"].to_pylist()[4]] == [
        "touchpoint:farewell", "touchpoint:farewell", "signal:wait_s<=180", "touchpoint:farewell"]


def test_tag_feedback_on_a_table(bank):
    table = pa.table({"feedback_id": ["f1", "f2", "f3"], "comment": ["柜员很专业", None, "the lobby was dirty"]})
    out = bank.tag_feedback(table)
    assert set(out) == {"pzb_tags", "polarity", "evidence"}
    for name, array in out.items():
        assert array.type == FEEDBACK.field(name).type, name
    assert out["pzb_tags"].to_pylist() == [[{"dimension": "assurance", "polarity": "positive"}], [],
                                           [{"dimension": "tangibles", "polarity": "negative"}]]
    assert out["polarity"].to_pylist() == ["positive", "neutral", "negative"]
    assert out["evidence"].to_pylist() == [
        [{"tag": "assurance:positive", "rule": "cue:zh:很专业", "field": "comment", "span": "很专业", "start": 2, "end": 5}],
        [],
        [{"tag": "tangibles:negative", "rule": "cue:en:dirty", "field": "comment", "span": "dirty", "start": 14, "end": 19}],
    ]


def test_empty_table(bank):
    out = bank.tag_events(pa.table({"touchpoint": pa.array([], pa.string()), "text": pa.array([], pa.string()),
                                    "wait_s": pa.array([], pa.float64())}))
    assert all(len(a) == 0 for a in out.values())


# --- playbooks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["base"] + [p.name for p in list_playbooks()])
def test_builtin_playbooks_load_and_compile(name):
    playbook = load_playbook(name)
    base = load_playbook("base")
    for dim in DIMENSIONS:
        for pol in ("positive", "negative"):
            for lang in ("zh", "en"):
                assert len(getattr(getattr(playbook.cues.pzb[dim], pol), lang)) >= 15, (dim, pol, lang)
                assert set(getattr(getattr(base.cues.pzb[dim], pol), lang)) <= set(
                    getattr(getattr(playbook.cues.pzb[dim], pol), lang))
    assert sorted(playbook.cues.mot_step) == [1, 2, 3, 4, 5]
    tagger = Tagger(playbook)
    assert tagger.tag_comment("服务很专业").pzb_tags == [{"dimension": "assurance", "polarity": "positive"}]


def test_lexicon_cues_are_clean():
    """No blank cues or surrounding spaces, and no cue that is also a negator (it would never fire as a cue)."""
    for playbook in [load_playbook("base"), *list_playbooks()]:
        negators = set(playbook.negation.zh) | {w.lower() for w in playbook.negation.en}
        families = [playbook.cues.mot_step.values(), playbook.cues.abc.values(),
                    [getattr(pc, pol) for pc in playbook.cues.pzb.values() for pol in ("positive", "negative", "neutral")]]
        for lang_cues in (lc for family in families for lc in family):
            for cue in lang_cues.zh + lang_cues.en:
                assert cue and cue == cue.strip() and cue.lower() not in negators, (playbook.name, cue)


# --- dev data ------------------------------------------------------------------------------------
def macro_f1(lang: str) -> tuple[float, dict[str, float]]:
    """Document-level macro-F1 over dimensions with gold labels, polarity ignored."""
    tagger = Tagger(load_playbook(DEV_PLAYBOOK[lang]))
    records = [json.loads(line) for line in (DEV_DATA / f"{lang}_dev.jsonl").read_text(encoding="utf-8").splitlines() if line]
    dims = sorted({label["dimension"] for r in records for label in r["labels"]})
    counts = {d: [0, 0, 0] for d in dims}  # tp, fp, fn
    for record in records:
        gold = {label["dimension"] for label in record["labels"]}
        predicted = {t["dimension"] for t in tagger.tag_comment(record["text"]).pzb_tags}
        for d in dims:
            counts[d][0] += d in gold and d in predicted
            counts[d][1] += d in predicted and d not in gold
            counts[d][2] += d in gold and d not in predicted
    f1 = {d: 2 * tp / (2 * tp + fp + fn) if tp else 0.0 for d, (tp, fp, fn) in counts.items()}
    return sum(f1.values()) / len(f1), f1


@pytest.mark.skipif(not DEV_DATA.is_dir(), reason=f"labelled dev data not found at {DEV_DATA}")
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_dev_macro_f1_beats_keyword_baseline(lang):
    macro, per_dimension = macro_f1(lang)
    print(f"{lang} macro-F1 {macro:.3f} {per_dimension}")
    assert macro >= BASELINE_MACRO_F1[lang], per_dimension


def test_the_tag_cache_keeps_the_phrases_that_repeat_and_stays_bounded(monkeypatch):
    """One-off texts (a customer's own number) push out the least recently used tags only: a stock phrase used
    between them stays, and the cache never holds more than TAG_CACHE_ENTRIES."""
    from pipelines.tagging import tagger as tagger_module

    monkeypatch.setattr(tagger_module, "TAG_CACHE_ENTRIES", 3)
    tagger = Tagger(load_playbook("bank_branch"))
    phrase = "您好，欢迎光临，请问办理什么业务？"
    expected = tagger.tag_moment("greeting", phrase, 30)
    for n in range(10):
        tagger.tag_moment("greeting", f"my number is 13706290{n:03d}", 30)
        assert tagger.tag_moment("greeting", phrase, 30) is expected  # remembered, not tagged again
        assert len(tagger._seen) <= 3
    assert [key[1] for key in tagger._seen] == ["my number is 13706290008", "my number is 13706290009", phrase]
    assert Tagger(load_playbook("bank_branch")).tag_moment("greeting", phrase, 30) == expected


def test_a_text_is_analysed_once_for_all_its_moments_and_tags_as_without_the_caches(monkeypatch):
    """The Tagger remembers a text's cue analysis (and its models the text's features) across the touchpoints and
    wait buckets it comes with; the tags are those of a Tagger that remembers nothing."""
    from pipelines.tagging import tagger as tagger_module
    from pipelines.tagging.types import RecentCache

    playbook = load_playbook("bank_branch")
    analysed = []
    real_analyse = tagger_module.analyse
    monkeypatch.setattr(tagger_module, "analyse", lambda lexicon, text: analysed.append(text) or real_analyse(lexicon, text))
    texts = ["让您久等了，我马上为您办理。", "Sorry to keep you waiting, the clerk was rude 但是很专业", "服务很周到"]
    moments = [(tp, text, wait) for text in texts for tp in [*sorted(playbook.touchpoints)[:4], None, "unknown"]
               for wait in (30, 900, None)]
    remembering = Tagger(playbook)
    tags = [remembering.tag_moment(*moment) for moment in moments]
    assert sorted(analysed) == sorted(texts)  # once per text, not once per moment
    by_moment = dict(zip(moments, tags))
    short, unknown = by_moment[(None, texts[0], 30)], by_moment[(None, texts[0], None)]
    text_rows = [e for e in short.evidence if e["field"] == "text"]
    assert text_rows and all(any(e is f for f in unknown.evidence) for e in text_rows)  # held once, not per moment
    monkeypatch.setattr(tagger_module, "TAG_CACHE_ENTRIES", 0)
    monkeypatch.setattr(tagger_module, "TEXT_CACHE_ENTRIES", 0)
    forgetting = Tagger(playbook)
    for model, _ in [*forgetting.dimension_models.values(), *forgetting.mot_models.values()]:  # shared by the process
        monkeypatch.setattr(model, "_text_ids", RecentCache(0))
    assert [forgetting.tag_moment(*moment) for moment in moments] == tags
    assert len(forgetting._seen) == len(forgetting._analyses) == 0
    assert len(analysed) == len(texts) + len(moments)


def test_a_process_shares_one_tagger_per_playbook_content(tmp_path):
    from pipelines.tagging.tagger import shared_tagger

    bank = shared_tagger(load_playbook("bank_branch"))
    assert shared_tagger(load_playbook("bank_branch")) is bank  # a fresh copy of the same playbook
    changed = load_playbook("bank_branch").model_copy(update={"version": "changed"})
    assert shared_tagger(changed) is not bank and shared_tagger(changed).playbook.version == "changed"
    assert shared_tagger(load_playbook("airline")) is not bank
