"""Key drivers, moment attribution and the follow-up queue (queries/ + pipelines/views.py) on the view fixture.

Expected values are worked out from the fixture lists of test_views.py in plain Python, never by the SQL under test.
"""
from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import duckdb
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.playbook import Playbook
from pipelines.views import build_views
from test_views import FEEDBACK, MOMENTS, by, rows, t, write_fixture, write_rated_responses

MODELS = ("first_moment", "last_moment", "linear", "u_shaped", "time_decay")


def _build(tmp_path, playbook: Playbook | None = None, **kwargs) -> duckdb.DuckDBPyConnection:
    if not (tmp_path / "out").exists():
        write_fixture(tmp_path / "out")
    build_views(str(tmp_path / "out"), str(tmp_path / "motpipe.duckdb"), playbook=playbook, **kwargs)
    return duckdb.connect(str(tmp_path / "motpipe.duckdb"), read_only=True)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    con = _build(tmp_path_factory.mktemp("analytics"))
    yield con
    con.close()


def _visit_scores(outcome_index: int) -> dict[str, float]:
    """Mean outcome per visit over its linked responses (FEEDBACK tuples: csat at 4, nps 5, ces 6)."""
    scores: dict[str, list[float]] = {}
    for response in FEEDBACK:
        if response[1] is not None and response[outcome_index] is not None:
            scores.setdefault(response[1], []).append(response[outcome_index])
    return {visit: sum(v) / len(v) for visit, v in scores.items()}


def _deviations(outcome_index: int) -> dict[str, float]:
    scores = _visit_scores(outcome_index)
    mean = sum(scores.values()) / len(scores)
    return {visit: score - mean for visit, score in scores.items()}


def test_attribution_of_a_three_moment_visit(db):
    # V2 (10:00, 10:01, 10:03) is csat 2; the scored visits are V1 4.5, V2 2, V3 3 -> mean 19/6, deviation -7/6.
    deviation = 2 - 19 / 6
    got = rows(db, "select * from int_moment_attribution where visit_id = 'V2' and outcome = 'csat' order by position")
    assert [r["position"] for r in got] == [1, 2, 3] and {r["moments"] for r in got} == {3}
    assert [r["deviation"] for r in got] == pytest.approx([deviation] * 3)
    decay = [0.5 ** (180 / 1800), 0.5 ** (120 / 1800), 1.0]  # seconds before the last moment / the default half-life
    expected = {
        "first_moment": [1, 0, 0], "last_moment": [0, 0, 1], "linear": [1 / 3] * 3, "u_shaped": [0.4, 0.2, 0.4],
        "time_decay": [w / sum(decay) for w in decay],
    }
    for model, weights in expected.items():
        assert [r[f"weight_{model}"] for r in got] == pytest.approx(weights), model
        assert [r[model] for r in got] == pytest.approx([deviation * w for w in weights]), model


def test_u_shaped_weights_of_short_and_long_visits(db):
    # V1 has 5 moments: 0.4, 0.2/3 x 3, 0.4; V3 has 4: 0.4, 0.1, 0.1, 0.4
    weights = {v: [r["weight_u_shaped"] for r in rows(db, f"select * from int_moment_attribution where visit_id = '{v}' "
                                                          "and outcome = 'csat' order by position")] for v in ("V1", "V3")}
    assert weights["V1"] == pytest.approx([0.4, 0.2 / 3, 0.2 / 3, 0.2 / 3, 0.4])
    assert weights["V3"] == pytest.approx([0.4, 0.1, 0.1, 0.4])


def test_time_decay_half_life_comes_from_the_playbook(tmp_path):
    con = _build(tmp_path, Playbook(name="t", version="1", attribution={"half_life_s": 60}))
    got = [r["weight_time_decay"] for r in rows(con, "select * from int_moment_attribution where visit_id = 'V2' "
                                                    "and outcome = 'csat' order by position")]
    assert got == pytest.approx([0.125 / 1.375, 0.25 / 1.375, 1 / 1.375])  # 3, 2 and 0 half-lives before the end
    assert json.loads(dict(con.execute("select key, value from motpipe_settings").fetchall())["attribution_half_life_s"]) == 60.0


@pytest.mark.parametrize("outcome, index", [("csat", 4), ("nps", 5), ("ces", 6)])
def test_every_model_attributes_exactly_each_visits_deviation(db, outcome, index):
    sums = {r["visit_id"]: r for r in rows(db, f"select visit_id, {', '.join(f'sum({m}) as {m}' for m in MODELS)} "
                                               f"from int_moment_attribution where outcome = '{outcome}' group by visit_id")}
    deviations = _deviations(index)
    assert set(sums) == set(deviations)
    for visit, deviation in deviations.items():
        assert [sums[visit][m] for m in MODELS] == pytest.approx([deviation] * 5), visit


def test_moment_attribution_by_touchpoint_step_and_staff(db):
    deviation = _deviations(4)
    counts = {v: sum(1 for m in MOMENTS if m[0] == v) for v in deviation}
    got = {(r["level"], r["key"]): r for r in rows(db, "select * from moment_attribution where outcome = 'csat'")}
    # greeting is the first moment of V1, V2 and V3: linear credit = sum of deviation / moments of the visit
    greeting = got[("touchpoint", "greeting")]
    assert (greeting["visits"], greeting["moments"]) == (3, 3)
    assert greeting["linear"] == pytest.approx(sum(deviation[v] / counts[v] for v in ("V1", "V2", "V3")))
    assert greeting["first_moment"] == pytest.approx(sum(deviation.values()))
    assert greeting["last_moment"] == 0
    assert greeting["avg_visit_deviation"] == pytest.approx(sum(deviation.values()) / 3)
    # staff s1 served all of V1 except the callback, and all of V3
    s1 = got[("staff", "s1")]
    assert (s1["visits"], s1["moments"]) == (2, 8)
    assert s1["last_moment"] == pytest.approx(deviation["V3"])
    # the deviations are from the mean, so every level's column sums to 0
    for level in ("touchpoint", "mot_step", "staff"):
        for model in MODELS:
            assert sum(r[model] for (lvl, _), r in got.items() if lvl == level) == pytest.approx(0, abs=1e-12)


def test_follow_up_cases_on_the_fixture(db):
    cases = by(db, "follow_up_cases", "visit_id")
    assert set(cases) == {"V2", "V5"}  # V1 and V3 ended resolved with good scores, V4 ended positive
    as_of = t(8, 11, 5)  # the latest moment (V4's farewell); the latest feedback is earlier
    v2 = cases["V2"]
    # last moment negative (1) + unresolved (2) + csat 2 <= 2 (2) = 5 points: high, due 4 hours after the visit ended
    assert (v2["status"], v2["priority"], v2["reason"]) == ("open", "high", "last_moment_negative + ended_unresolved + low_score")
    assert (v2["opened_at"], v2["due_at"], v2["as_of"], v2["closed_at"]) == (t(1, 10, 3), t(1, 14, 3), as_of, None)
    assert v2["age_hours"] == pytest.approx((as_of - t(1, 10, 3)).total_seconds() / 3600)
    assert v2["sla_breached"] is True
    assert (v2["evidence_text"], v2["evidence"], v2["feedback_comment"]) == ("waited far too long", 'cue:en:waited "waited"', "slow")
    v5 = cases["V5"]  # abandoned: 2 points, medium, due in 24 hours
    assert (v5["priority"], v5["reason"], v5["opened_at"], v5["due_at"]) == ("medium", "ended_unresolved", t(2, 15, 5), t(3, 15, 5))
    assert v2["case_id"] == "case-" + hashlib.md5(b"V2").hexdigest()[:16]


def test_follow_up_thresholds_and_service_levels_from_the_playbook(tmp_path):
    book = Playbook(name="t", version="1", follow_up={"low_csat": 3, "due_hours": {"medium": 10}})
    cases = by(_build(tmp_path, book), "follow_up_cases", "visit_id")
    assert set(cases) == {"V2", "V3", "V5"}
    v3 = cases["V3"]  # csat 3 <= 3 only: low score, opened when the response came in (F5, day 2 18:00)
    assert (v3["reason"], v3["priority"], v3["opened_at"], v3["due_at"]) == ("low_score", "medium", t(2, 18, 0), t(3, 4, 0))
    assert cases["V2"]["due_at"] == t(1, 14, 3)  # high keeps its default of 4 hours
    assert cases["V5"]["due_at"] == t(2, 15, 5) + timedelta(hours=10)


def test_key_drivers_need_enough_complete_responses(db):
    drivers = rows(db, "select * from key_drivers order by outcome, dimension")
    assert len(drivers) == 15
    # csat: F1, F2, F5 rate all five (used), F3 and F4 rate one (left out); nps and ces: F1 and F2
    used = {(r["outcome"], r["responses_used"], r["responses_left_out"]) for r in drivers}
    assert used == {("csat", 3, 2), ("nps", 2, 0), ("ces", 2, 0)}
    assert all(r["share"] is None and r["r2"] is None for r in drivers)  # fewer than 10: no model


def test_key_drivers_table_and_drivers_importance(tmp_path):
    write_fixture(tmp_path / "out")
    write_rated_responses(tmp_path / "out")
    con = _build(tmp_path, drivers_importance=True)
    drivers = {r["dimension"]: r for r in rows(con, "select * from key_drivers where outcome = 'csat'")}
    assert {r["responses_used"] for r in drivers.values()} == {24 + 3}
    assert sum(r["share"] for r in drivers.values()) == pytest.approx(drivers["reliability"]["r2"])
    assert sorted(r["rank"] for r in drivers.values()) == [1, 2, 3, 4, 5]
    assert drivers["reliability"]["rank"] == 1  # the generated csat follows reliability
    assert all(r["share_low"] <= r["share"] <= r["share_high"] for r in drivers.values())
    ipa = {r["dimension"]: r for r in rows(con, "select * from importance_performance where importance_method = 'drivers'")}
    assert {d: r["importance"] for d, r in ipa.items()} == pytest.approx({d: r["relative_share"] for d, r in drivers.items()})
    build_views(str(tmp_path / "out"), str(tmp_path / "plain.duckdb"))  # without drivers_importance
    plain = duckdb.connect(str(tmp_path / "plain.duckdb"), read_only=True)
    assert plain.execute("select count(*) from importance_performance where importance_method = 'drivers'").fetchall() == [(0,)]


def test_rebuilt_cases_are_identical(tmp_path):
    first = rows(_build(tmp_path), "select * from follow_up_cases")
    assert rows(_build(tmp_path), "select * from follow_up_cases") == first


def test_cli_cases_exports_and_filters(tmp_path):
    write_fixture(tmp_path / "out")
    runner = CliRunner()
    result = runner.invoke(app, ["cases", "--out", str(tmp_path / "out")])  # builds the views when missing
    assert result.exit_code == 0, result.output
    assert "2 open cases" in result.output
    for name in ("cases.csv", "cases.jsonl"):
        result = runner.invoke(app, ["cases", "--out", str(tmp_path / "out"), "--status", "all", "-o", str(tmp_path / name)])
        assert result.exit_code == 0, result.output
        assert "wrote 2 all cases" in result.output
    exported = [json.loads(line) for line in (tmp_path / "cases.jsonl").read_text().splitlines()]
    assert [(c["visit_id"], c["priority"], c["status"]) for c in exported] == [("V2", "high", "open"), ("V5", "medium", "open")]
    header = (tmp_path / "cases.csv").read_text().splitlines()[0].split(",")
    assert header[:5] == ["case_id", "visit_id", "customer_id", "status", "priority"]
    closed = runner.invoke(app, ["cases", "--out", str(tmp_path / "out"), "--status", "closed"])
    assert closed.exit_code == 0 and "0 closed cases" in closed.output
    bad = runner.invoke(app, ["cases", "--out", str(tmp_path / "out"), "--status", "pending"])
    assert bad.exit_code == 2 and "'pending' is not one of open, closed, all" in bad.output


def test_cli_views_rejects_an_unknown_importance_method(tmp_path):
    write_fixture(tmp_path / "out")
    result = CliRunner().invoke(app, ["views", "--out", str(tmp_path / "out"), "--importance", "magic"])
    assert result.exit_code == 2 and "magic is not a method" in result.output


def _event(event_id: str, at: str, customer: str, visit: str, touchpoint: str, outcome: str | None = None) -> str:
    return json.dumps({"event_id": event_id, "occurred_at": at, "customer_id": customer, "visit_id": visit,
                       "channel": "branch", "touchpoint": touchpoint, "outcome": outcome})


def test_cases_open_stay_open_and_close_across_three_daily_runs(tmp_path):
    """Daily runs over a growing input: day 1 opens A's case, day 2 keeps it and opens C's, day 3's callback closes
    A's; a rerun and a backfill of all three days give the same cases, none twice."""
    from pipelines.config import RunConfig
    from pipelines.pipeline import run

    days = {
        "2026-10-01": [_event("a1", "2026-10-01T09:00:00Z", "cA", "vA", "greeting"),
                       _event("a2", "2026-10-01T09:10:00Z", "cA", "vA", "counter_service", "unresolved"),
                       _event("b1", "2026-10-01T10:00:00Z", "cB", "vB", "greeting"),
                       _event("b2", "2026-10-01T10:05:00Z", "cB", "vB", "counter_service", "resolved"),
                       _event("b2", "2026-10-01T10:05:00Z", "cB", "vB", "counter_service", "resolved"),  # a duplicate
                       '{"event_id": "broken"'],  # quarantined: every table has a partition
        "2026-10-02": [_event("c1", "2026-10-02T11:00:00Z", "cC", "vC", "greeting"),
                       _event("c2", "2026-10-02T11:20:00Z", "cC", "vC", "counter_service", "escalated")],
        "2026-10-03": [_event("a3", "2026-10-03T08:30:00Z", "cA", "vA2", "callback")],
    }
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (tmp_path / "feedback.jsonl").write_text(json.dumps(
        {"feedback_id": "f1", "submitted_at": "2026-10-01T12:00:00Z", "customer_id": "cB", "visit_id": "vB", "csat": 5}) + "\n")

    def cases(**window) -> list[dict]:
        run(RunConfig(touchpoints=[str(inputs / "*.jsonl")], feedback=[str(tmp_path / "feedback.jsonl")], out=str(out),
                      buckets=2, **window))
        build_views(str(out), str(tmp_path / "motpipe.duckdb"))
        con = duckdb.connect(str(tmp_path / "motpipe.duckdb"), read_only=True)
        try:
            return rows(con, "select case_id, visit_id, status, priority, reason, opened_at, closed_at, "
                             "closed_by_event_id from follow_up_cases order by visit_id")
        finally:
            con.close()

    seen = []
    for day, lines in days.items():
        (inputs / f"{day}.jsonl").write_text("\n".join(lines) + "\n")
        seen.append(cases(start=day, end=day))
    case_a = "case-" + hashlib.md5(b"vA").hexdigest()[:16]
    case_c = "case-" + hashlib.md5(b"vC").hexdigest()[:16]
    opened_a = (case_a, "vA", "open", "medium", "ended_unresolved", t(1, 9, 10), None, None)
    assert [tuple(c.values()) for c in seen[0]] == [opened_a]
    assert [tuple(c.values()) for c in seen[1]] == [opened_a, (case_c, "vC", "open", "high", "ended_escalated", t(2, 11, 20), None, None)]
    assert [tuple(c.values()) for c in seen[2]] == [
        (case_a, "vA", "closed", "medium", "ended_unresolved", t(1, 9, 10), t(3, 8, 30), "a3"),
        (case_c, "vC", "open", "high", "ended_escalated", t(2, 11, 20), None, None)]
    assert cases(start="2026-10-03", end="2026-10-03") == seen[2]  # the same daily run again
    assert cases(start="2026-10-01", end="2026-10-03") == seen[2]  # a backfill of the three days


@pytest.mark.parametrize("section, message", [
    ({"follow_up": {"due_hours": {"high": 0}}}, "due_hours must be positive, finite numbers of hours"),
    ({"follow_up": {"due_hours": {"urgent": 1}}}, "Input should be 'high', 'medium' or 'low'"),
    ({"follow_up": {"low_csat": float("inf")}}, "finite number"),
    ({"attribution": {"half_life_s": 0}}, "greater than 0"),
])
def test_bad_follow_up_or_attribution_settings_are_clear_errors(section, message):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        Playbook(name="t", version="1", **section)
