"""The DuckDB journey views (queries/) on a small hand-built Parquet fixture.

Expected values are worked out by hand from the fixture below (the arithmetic is in the comments) or computed in
plain Python from the fixture's own lists, never by the SQL under test.
"""
from __future__ import annotations

import statistics
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.views import QUERIES_DIR, build_views, load_views, parse_weights

UTC = timezone.utc
RUN = "r1"


def t(day: int, hh: int, mm: int) -> datetime:
    return datetime(2026, 10, day, hh, mm, tzinfo=UTC)


def ev(tag, rule, field="touchpoint", span=None):
    return {"tag": tag, "rule": rule, "field": field, "span": span, "start": None, "end": None}


# (visit, customer, position, time, channel, touchpoint, mot_step, step source, polarity, staff, location, wait_s,
#  outcome, text, evidence)
STEP_NAMES = {1: "set_the_tone", 2: "diagnose", 3: "resolve", 4: "review", 5: "follow_up"}
MOMENTS = [
    # V1: all five steps; scores 1, 0, -1, 1, 0
    ("V1", "c1", 1, t(1, 9, 0), "branch", "greeting", 1, "touchpoint", "positive", "s1", "L1", 60.0, None, "hello", None),
    ("V1", "c1", 2, t(1, 9, 5), "branch", "needs_inquiry", 2, "touchpoint", "neutral", "s1", "L1", 120.0, None, None, None),
    ("V1", "c1", 3, t(1, 9, 10), "branch", "counter_service", 3, "touchpoint", "negative", "s1", "L1", 600.0, None, None, None),
    ("V1", "c1", 4, t(1, 9, 20), "branch", "farewell", 4, "touchpoint", "positive", "s1", "L1", None, "resolved", None, None),
    ("V1", "c1", 5, t(1, 9, 30), "phone", "callback", 5, "touchpoint", "neutral", "s2", "L1", 30.0, "resolved", None, None),
    # V2: scores -1, 1, -1 (most intense: a tie, the latest wins); last moment negative and unresolved
    ("V2", "c2", 1, t(1, 10, 0), "app", "greeting", 1, "touchpoint", "negative", "s2", "L1", 300.0, None, None, None),
    ("V2", "c2", 2, t(1, 10, 1), "app", "needs_inquiry", 2, "touchpoint", "positive", "s2", "L1", 0.0, None, None, None),
    ("V2", "c2", 3, t(1, 10, 3), "app", "farewell", 4, "touchpoint", "negative", "s2", "L1", None, "unresolved",
     "waited far too long", [ev("mot_step=4", "touchpoint:farewell"),
                             ev("responsiveness:negative", "cue:en:waited", "text", "waited")]),
    # V3: c1's later visit; an unmapped moment, a step from text, a repeated step; scores 0, 1, 1, 0
    ("V3", "c1", 1, t(2, 9, 0), "branch", "greeting", 1, "touchpoint", "neutral", "s1", "L1", 90.0, None, None, None),
    ("V3", "c1", 2, t(2, 9, 2), "branch", "hallway_chat", None, None, "positive", "s1", "L1", None, None, None, None),
    ("V3", "c1", 3, t(2, 9, 4), "branch", "counter_service", 3, "text", "positive", "s1", "L1", None, None, None, None),
    ("V3", "c1", 4, t(2, 9, 10), "branch", "counter_service", 3, "touchpoint", "neutral", "s1", "L1", None, "resolved",
     "done", [ev("mot_step=3", "touchpoint:counter_service")]),
    # V4: next week, other location; scores 1, 1; no outcome
    ("V4", "c3", 1, t(8, 11, 0), "branch", "greeting", 1, "touchpoint", "positive", "s1", "L2", 45.0, None, None, None),
    ("V4", "c3", 2, t(8, 11, 5), "branch", "farewell", 4, "touchpoint", "positive", "s1", "L2", None, None, None, None),
    # V5: no staff; abandoned; same step path as V4
    ("V5", "c4", 1, t(2, 15, 0), "phone", "greeting", 1, "touchpoint", "neutral", None, None, None, None, None, None),
    ("V5", "c4", 2, t(2, 15, 5), "phone", "farewell", 4, "touchpoint", "neutral", None, None, None, "abandoned", "bye", None),
]
DIMS = ("reliability", "responsiveness", "assurance", "empathy", "tangibles")
# feedback_id, visit, customer, submitted, csat, nps, ces, comment, {dimension: (expectation, perception)}
FEEDBACK = [
    ("F1", "V1", "c1", t(1, 12, 0), 5, 9, 2, "great",
     {"reliability": (6, 5), "responsiveness": (6, 6), "assurance": (5, 5), "empathy": (5, 6), "tangibles": (4, 5)}),
    ("F2", "V2", "c2", t(1, 12, 0), 2, 3, 6, "slow",
     {"reliability": (7, 3), "responsiveness": (6, 2), "assurance": (6, 4), "empathy": (5, 3), "tangibles": (5, 4)}),
    ("F3", "V1", "c1", t(3, 9, 0), 4, None, None, "ok later", {"reliability": (6, 6)}),
    ("F4", None, "c9", t(2, 8, 0), 3, None, None, None, {"tangibles": (6, 6)}),
    ("F5", "V3", "c1", t(2, 18, 0), 3, None, None, "fine",
     {"reliability": (5, 4), "responsiveness": (5, 5), "assurance": (5, 4), "empathy": (4, 5), "tangibles": (4, 3)}),
]


def _write(table_dir: Path, rows: list[dict], schema: pa.Schema, dt_of) -> None:
    by_dt: dict[str, list[dict]] = {}
    for row in rows:
        by_dt.setdefault(dt_of(row), []).append(row)
    for dt, part in by_dt.items():
        target = table_dir / f"dt={dt}"
        target.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(part, schema=schema), target / "part-00000.parquet")


def write_fixture(out: Path) -> None:
    from schemas.tables import DUPLICATES, EVENTS, FEEDBACK as FEEDBACK_SCHEMA, QUARANTINE

    counts = {}
    for m in MOMENTS:
        counts[m[0]] = counts.get(m[0], 0) + 1
    events = []
    for i, (visit, cust, pos, at, channel, tp, step, source, pol, staff, loc, wait, outcome, text, evidence) in enumerate(MOMENTS):
        events.append(dict(
            event_id=f"e{i:02d}", occurred_at=at, customer_id=cust, person_id=f"p_{cust}", visit_id=visit,
            position_in_visit=pos,
            moments_in_visit=counts[visit], is_first_moment=pos == 1, is_last_moment=pos == counts[visit],
            channel=channel, touchpoint=tp, staff_id=staff, location_id=loc, wait_s=wait, text=text, outcome=outcome,
            mot_step=step, mot_step_name=STEP_NAMES.get(step), mot_step_source=source, polarity=pol,
            evidence=evidence or [], run_id=RUN, schema_version="1.2"))
    _write(out / "events", events, EVENTS, lambda r: r["occurred_at"].date().isoformat())
    feedback = []
    for fid, visit, cust, at, csat, nps, ces, comment, ratings in FEEDBACK:
        row = dict(feedback_id=fid, submitted_at=at, customer_id=cust, person_id=f"p_{cust}", visit_id=visit,
                   link_method="visit_id" if visit else "unlinked", csat=csat, nps=nps, ces=ces, comment=comment,
                   run_id=RUN, schema_version="1.2")
        for dim, (e, p) in ratings.items():
            row.update({f"{dim}_expectation": float(e), f"{dim}_perception": float(p), f"{dim}_gap": float(p - e)})
        feedback.append(row)
    _write(out / "feedback", feedback, FEEDBACK_SCHEMA, lambda r: r["submitted_at"].date().isoformat())
    quarantine = [dict(dataset="events", record_id=f"q{i}", error_kind=k, run_id=RUN, dt="2026-10-01")
                  for i, k in enumerate(["missing_required_field", "missing_required_field", "bad_timestamp"])]
    quarantine.append(dict(dataset="feedback", record_id="qf", error_kind="wrong_type", run_id=RUN, dt="2026-10-02"))
    _write(out / "quarantine", quarantine, QUARANTINE, lambda r: r["dt"])
    _write(out / "duplicates", [dict(dataset="events", record_id="e00", run_id=RUN, dt="2026-10-01")], DUPLICATES,
           lambda r: r["dt"])


def write_rated_responses(out: Path, n: int = 24) -> None:
    """Unlinked feedback rating all five dimensions, enough for the key-drivers chart (the view fixture has 3)."""
    from schemas.tables import FEEDBACK

    rows = []
    for i in range(n):
        perception = {d: float(1 + (i * (j + 2)) % 7) for j, d in enumerate(DIMS)}
        rows.append({"feedback_id": f"R{i:02d}", "submitted_at": t(5, 9, i), "customer_id": f"r{i}", "person_id": f"p_r{i}",
                     "link_method": "unlinked",
                     "csat": 1 + round(perception["reliability"] * 4 / 7 + (i % 2) * 0.4), "run_id": "r1", "schema_version": "1.0",
                     **{f"{d}_perception": p for d, p in perception.items()}})
    _write(out / "feedback", rows, FEEDBACK, lambda r: "2026-10-05")


def write_quality_results(out: Path) -> None:
    target = out / "quality_results" / f"run_id={RUN}"
    target.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({
        "run_id": [RUN, RUN], "dataset": ["events", "events"], "expectation": ["expect_a", "expect_b"],
        "severity": ["error", "warning"], "success": [True, False], "observed_value": ["1", "2"],
        "element_count": [16, 16], "unexpected_count": [0, 3]}), target / "part-00000.parquet")


@pytest.fixture(scope="module", params=["materialized", "views"])
def db(request, tmp_path_factory) -> duckdb.DuckDBPyConnection:
    root = tmp_path_factory.mktemp(f"views-{request.param}")
    write_fixture(root / "out")
    path = root / "motpipe.duckdb"
    build_views(str(root / "out"), str(path), materialize=request.param == "materialized")
    con = duckdb.connect(str(path), read_only=True)
    yield con
    con.close()


def rows(con, sql: str) -> list[dict]:
    return con.sql(sql).to_arrow_table().to_pylist()


def by(con, view: str, key: str) -> dict:
    return {r[key]: r for r in rows(con, f"select * from {view}")}


def test_every_sql_file_has_a_header_with_grain_and_columns():
    views = load_views()
    assert {v.layer for v in views} == {"staging", "intermediate", "marts"}
    for view in views:
        assert "grain:" in view.header and "columns:" in view.header, view.path
    names = [v.name for v in views]
    for mart in ("journeys", "journey_satisfaction", "mot_step_scorecard", "servqual_gaps", "importance_performance",
                 "staff_mot_scores", "journey_paths", "mot_funnel", "at_risk_customers", "daily_quality"):
        assert mart in names
    assert names.index("journeys") < names.index("journey_satisfaction") < names.index("journey_paths")


def test_staging_reads_hive_partitions(db):
    assert db.execute("select count(*), count(distinct dt) from stg_events").fetchall() == [(16, 3)]
    assert db.execute("select count(*) from stg_feedback").fetchall() == [(5,)]
    assert db.execute("select count(*) from stg_quarantine").fetchall() == [(4,)]
    assert db.execute("select count(*) from stg_duplicates").fetchall() == [(1,)]
    assert db.execute("select count(*) from stg_quality_results").fetchall() == [(0,)]


def test_staging_files_still_work_with_a_session_variable(tmp_path):
    write_fixture(tmp_path)
    con = duckdb.connect()
    con.execute(f"set variable motpipe_out = '{tmp_path}'")
    con.execute((QUERIES_DIR / "staging" / "stg_events.sql").read_text())
    assert con.execute("select count(*) from stg_events").fetchall() == [(16,)]


def test_journeys(db):
    j = by(db, "journeys", "visit_id")
    assert set(j) == {"V1", "V2", "V3", "V4", "V5"}
    v1 = j["V1"]
    assert (v1["customer_id"], v1["first_channel"], v1["channels"], v1["channel_count"]) == ("c1", "branch", ["branch", "phone"], 2)
    assert (v1["started_at"], v1["ended_at"], v1["duration_s"], v1["moments"]) == (t(1, 9, 0), t(1, 9, 30), 1800.0, 5)
    assert (v1["first_touchpoint"], v1["first_mot_step"], v1["first_mot_step_name"], v1["first_polarity"]) == \
        ("greeting", 1, "set_the_tone", "positive")
    assert (v1["last_touchpoint"], v1["last_mot_step"], v1["last_mot_step_name"], v1["last_polarity"]) == \
        ("callback", 5, "follow_up", "neutral")
    assert (v1["steps_reached"], v1["steps_reached_count"], v1["completed_all_steps"]) == ([1, 2, 3, 4, 5], 5, True)
    assert (v1["outcome"], v1["is_resolved"], v1["dt"]) == ("resolved", True, date(2026, 10, 1))
    # F1 (csat 5, nps 9, ces 2) and F3 (csat 4) -> csat 4.5, nps 9, ces 2
    assert (v1["has_feedback"], v1["feedback_count"], v1["feedback_ids"]) == (True, 2, ["F1", "F3"])
    assert (v1["csat"], v1["nps"], v1["ces"]) == (4.5, 9.0, 2.0)
    v2 = j["V2"]
    assert (v2["steps_reached"], v2["completed_all_steps"], v2["outcome"], v2["is_resolved"]) == ([1, 2, 4], False, "unresolved", False)
    assert (v2["last_touchpoint"], v2["last_polarity"], v2["duration_s"], v2["csat"]) == ("farewell", "negative", 180.0, 2.0)
    v3 = j["V3"]
    assert (v3["steps_reached"], v3["last_touchpoint"], v3["last_mot_step"], v3["feedback_ids"]) == ([1, 3], "counter_service", 3, ["F5"])
    v4 = j["V4"]
    assert (v4["outcome"], v4["is_resolved"], v4["has_feedback"], v4["feedback_count"], v4["csat"]) == (None, None, False, 0, None)
    v5 = j["V5"]
    assert (v5["customer_id"], v5["moments"], v5["duration_s"], v5["outcome"]) == ("c4", 2, 300.0, "abandoned")


def test_journey_satisfaction(db):
    s = by(db, "journey_satisfaction", "visit_id")
    cols = ("mean_score", "peak_score", "peak_end_score", "min_score", "last_score", "positive_moments", "negative_moments")
    expected = {
        # scores 1,0,-1,1,0: mean 0.2; |1| ties at positions 1, 3 (-1) and 4 -> latest is position 4 (+1); end 0
        "V1": (0.2, 1, 0.5, -1, 0, 2, 1),
        # -1,1,-1: all |1| -> latest is position 3 (-1); peak-end (-1 + -1) / 2
        "V2": (-1 / 3, -1, -1.0, -1, -1, 1, 2),
        "V3": (0.5, 1, 0.5, 0, 0, 2, 0),
        "V4": (1.0, 1, 1.0, 1, 1, 2, 0),
        "V5": (0.0, 0, 0.0, 0, 0, 0, 0),
    }
    for visit, values in expected.items():
        got = tuple(s[visit][c] for c in cols)
        assert got == pytest.approx(values), visit
    assert (s["V1"]["csat"], s["V1"]["nps"], s["V2"]["ces"], s["V4"]["csat"]) == (4.5, 9.0, 6.0, None)


def test_mot_step_scorecard(db):
    card = {(r["level"], r["mot_step"], r["touchpoint"]): r for r in rows(db, "select * from mot_step_scorecard")}
    cols = ("moments", "journeys", "positive_share", "negative_share", "avg_wait_s", "avg_csat", "last_moment_journeys",
            "last_moment_share", "last_moment_share_when_present")
    expected = {
        # step 1: +,-,0,+,0; waits 60, 300, 90, 45; csat of V1 4.5, V2 2, V3 3 (V4, V5 none); never last
        ("mot_step", 1, None): (5, 5, 0.4, 0.2, 123.75, 9.5 / 3, 0, 0.0, 0.0),
        ("mot_step", 2, None): (2, 2, 0.5, 0.0, 60.0, 3.25, 0, 0.0, 0.0),
        # step 3: V1 -, V3 + (text), V3 0; last moment of V3
        ("mot_step", 3, None): (3, 2, 1 / 3, 1 / 3, 600.0, 3.75, 1, 0.2, 0.5),
        # step 4: V1 +, V2 -, V4 +, V5 0; last moment of V2, V4, V5
        ("mot_step", 4, None): (4, 4, 0.5, 0.25, None, 3.25, 3, 0.6, 0.75),
        ("mot_step", 5, None): (1, 1, 0.0, 0.0, 30.0, 4.5, 1, 0.2, 1.0),
        ("touchpoint", 1, "greeting"): (5, 5, 0.4, 0.2, 123.75, 9.5 / 3, 0, 0.0, 0.0),
        ("touchpoint", 2, "needs_inquiry"): (2, 2, 0.5, 0.0, 60.0, 3.25, 0, 0.0, 0.0),
        # the text-tagged moment of V3 is not a playbook touchpoint moment
        ("touchpoint", 3, "counter_service"): (2, 2, 0.0, 0.5, 600.0, 3.75, 1, 0.2, 0.5),
        ("touchpoint", 4, "farewell"): (4, 4, 0.5, 0.25, None, 3.25, 3, 0.6, 0.75),
        ("touchpoint", 5, "callback"): (1, 1, 0.0, 0.0, 30.0, 4.5, 1, 0.2, 1.0),
    }
    assert set(card) == set(expected)
    for key, values in expected.items():
        got = tuple(card[key][c] for c in cols)
        assert got == pytest.approx(values), key
    assert card[("mot_step", 3, None)]["mot_step_name"] == "resolve"


def _servqual_expected(weights: dict[str, float]):
    per_dim = {}
    for dim in DIMS:
        pairs = [f[8][dim] for f in FEEDBACK if dim in f[8]]
        e = statistics.fmean(p[0] for p in pairs)
        p = statistics.fmean(p[1] for p in pairs)
        per_dim[dim] = (len(pairs), e, p, p - e)
    total = sum(weights.values())
    norm = {d: weights[d] / total for d in DIMS}
    weighted = sum(norm[d] * per_dim[d][3] for d in DIMS)
    return per_dim, norm, weighted


def test_servqual_gaps(db):
    g = rows(db, "select * from servqual_gaps")
    assert [r["dimension"] for r in g] == list(DIMS)
    per_dim, weights, weighted = _servqual_expected(parse_weights(None))
    # by hand: reliability (6,5),(7,3),(6,6),(5,4): expectation 6.0, perception 4.5, gap -1.5
    assert (per_dim["reliability"][1], per_dim["reliability"][2]) == (6.0, 4.5)
    assert weighted == pytest.approx(-1.008333333)  # .3*-1.5 + .25*-4/3 + .2*-1 + .15*0 + .1*-.25
    for r in g:
        n, e, p, gap = per_dim[r["dimension"]]
        assert (r["responses"], r["mean_expectation"], r["mean_perception"], r["gap"]) == (n, pytest.approx(e), pytest.approx(p), pytest.approx(gap))
        assert r["weight"] == pytest.approx(weights[r["dimension"]])
        assert r["weighted_servqual_score"] == pytest.approx(weighted)
        assert r["unweighted_servqual_score"] == pytest.approx(-0.8166666667)  # (-1.5 - 4/3 - 1 + 0 - 0.25) / 5
        assert r["servperf_score"] == pytest.approx(22.333333333 / 5)  # (4.5 + 13/3 + 13/3 + 14/3 + 4.5) / 5
        assert r["weighted_servperf_score"] == pytest.approx(4.45)


def test_servqual_weights_are_configurable(tmp_path):
    write_fixture(tmp_path / "out")
    custom = parse_weights("reliability=0.5")
    build_views(str(tmp_path / "out"), str(tmp_path / "w.duckdb"), weights=custom)
    con = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    got = {r["dimension"]: r for r in rows(con, "select * from servqual_gaps")}
    _, weights, weighted = _servqual_expected(custom)
    assert weights["reliability"] == pytest.approx(0.5 / 1.2)
    for dim in DIMS:
        assert got[dim]["weight"] == pytest.approx(weights[dim])
    assert got["tangibles"]["weighted_servqual_score"] == pytest.approx(weighted)
    settings = dict(con.execute("select key, value from motpipe_settings").fetchall())
    assert '"reliability": 0.5' in settings["weights"] and settings["out_dir"] == str((tmp_path / "out").resolve())
    with pytest.raises(ValueError):
        parse_weights("speed=1")
    with pytest.raises(ValueError):
        parse_weights("reliability=-1")


def test_importance_performance(db):
    got = {(r["importance_method"], r["dimension"]): r for r in rows(db, "select * from importance_performance")}
    _, weights, _ = _servqual_expected(parse_weights(None))
    performance, correlation = {}, {}
    for dim in DIMS:
        pairs = [(f[8][dim][1], f[4]) for f in FEEDBACK if dim in f[8]]
        performance[dim] = statistics.fmean(p for p, _ in pairs)
        correlation[dim] = statistics.correlation([p for p, _ in pairs], [c for _, c in pairs])
    p_threshold = statistics.fmean(performance.values())

    def quadrant(importance, threshold, perf):
        high, good = importance >= threshold, perf >= p_threshold
        return {(True, False): "concentrate here", (True, True): "keep up the good work",
                (False, False): "low priority", (False, True): "possible overkill"}[(high, good)]

    for method, importance in (("correlation", correlation), ("weights", weights)):
        i_threshold = statistics.fmean(importance.values())
        for dim in DIMS:
            r = got[(method, dim)]
            assert r["importance"] == pytest.approx(importance[dim])
            assert r["performance"] == pytest.approx(performance[dim])
            assert r["importance_threshold"] == pytest.approx(i_threshold)
            assert r["performance_threshold"] == pytest.approx(p_threshold)
            assert r["quadrant"] == quadrant(importance[dim], i_threshold, performance[dim]), (method, dim)
    # by hand for the weights: mean weight 0.2, mean performance 4.4667; reliability 0.3 / 4.5 -> keep up the good work,
    # responsiveness .25 / 4.33 -> concentrate here, assurance .2 / 4.33 -> concentrate here (equal counts as high)
    assert got[("weights", "reliability")]["quadrant"] == "keep up the good work"
    assert got[("weights", "responsiveness")]["quadrant"] == "concentrate here"
    assert got[("weights", "assurance")]["quadrant"] == "concentrate here"
    assert got[("weights", "empathy")]["quadrant"] == "possible overkill"
    assert got[("weights", "tangibles")]["quadrant"] == "possible overkill"


def test_staff_mot_scores(db):
    got = {(r["staff_id"], r["location_id"], r["week_start"]): r for r in rows(db, "select * from staff_mot_scores")}
    cols = ("moments", "journeys", "positive_moments", "negative_moments", "positive_share", "step_1_positive_share",
            "step_2_positive_share", "step_3_positive_share", "step_4_positive_share", "step_5_positive_share",
            "avg_wait_s", "feedback_linked", "avg_csat")
    expected = {
        # V1 positions 1-4 and all of V3; waits 60, 120, 600, 90; feedback F1, F3 (V1) + F5 (V3); csat of V1 4.5, V3 3
        ("s1", "L1", date(2026, 9, 28)): (8, 2, 4, 1, 0.5, 0.5, 0.0, 1 / 3, 1.0, None, 217.5, 3, 3.75),
        # V1 position 5 and all of V2; waits 30, 300, 0
        ("s2", "L1", date(2026, 9, 28)): (4, 2, 1, 2, 0.25, 0.0, 1.0, None, 0.0, 0.0, 110.0, 3, 3.25),
        ("s1", "L2", date(2026, 10, 5)): (2, 1, 2, 0, 1.0, 1.0, None, None, 1.0, None, 45.0, 0, None),
    }
    assert set(got) == set(expected)  # V5 has no staff
    for key, values in expected.items():
        assert tuple(got[key][c] for c in cols) == pytest.approx(values), key


def test_journey_paths(db):
    got = {(r["path_type"], r["path"]): r for r in rows(db, "select * from journey_paths")}
    steps = sorted((r for r in got.values() if r["path_type"] == "mot_step"), key=lambda r: r["path_rank"])
    assert [(r["path"], r["journeys"]) for r in steps] == [
        ("1 > 4", 2), ("1 > 2 > 3 > 4 > 5", 1), ("1 > 2 > 4", 1), ("1 > 3", 1)]  # V3: unmapped skipped, 3,3 collapsed
    top = got[("mot_step", "1 > 4")]
    assert (top["share"], top["path_length"], top["avg_mean_score"], top["avg_csat"]) == (0.4, 2, 0.5, None)
    assert got[("mot_step", "1 > 2 > 3 > 4 > 5")]["completed_all_steps_share"] == 1.0
    tps = sorted((r for r in got.values() if r["path_type"] == "touchpoint"), key=lambda r: r["path_rank"])
    assert (tps[0]["path"], tps[0]["journeys"], tps[0]["path_rank"]) == ("greeting > farewell", 2, 1)
    assert ("touchpoint", "greeting > hallway_chat > counter_service > counter_service") in got
    assert sum(r["journeys"] for r in tps) == 5


def test_mot_funnel(db):
    f = rows(db, "select * from mot_funnel order by mot_step")
    got = [(r["mot_step"], r["mot_step_name"], r["journeys_with_step"], r["journeys_reached"], r["share_of_journeys"],
            r["conversion_from_previous"], r["drop_off"], r["drop_off_share"]) for r in f]
    # steps per journey: V1 1-5, V2 1,2,4, V3 1,3, V4 1,4, V5 1,4
    assert got == [
        (1, "set_the_tone", 5, 5, 1.0, 1.0, 0, 0.0),
        (2, "diagnose", 2, 2, 0.4, 0.4, 3, 0.6),
        (3, "resolve", 2, 1, 0.2, 0.5, 1, 0.5),
        (4, "review", 4, 1, 0.2, 1.0, 0, 0.0),
        (5, "follow_up", 1, 1, 0.2, 1.0, 0, 0.0),
    ]


def test_at_risk_customers(db):
    got = rows(db, "select * from at_risk_customers")
    # c1's latest visit V3 ended resolved on a neutral moment; c3's V4 has no outcome and ended positive
    assert [r["customer_id"] for r in got] == ["c4", "c2"]  # latest ended first
    c4, c2 = got
    assert (c2["latest_visit_id"], c2["journeys"], c2["risk_reason"], c2["evidence_text"], c2["evidence"],
            c2["feedback_comment"], c2["csat"]) == \
        ("V2", 1, "last_moment_negative + ended_unresolved", "waited far too long", 'cue:en:waited "waited"', "slow", 2.0)
    assert (c4["latest_visit_id"], c4["risk_reason"], c4["outcome"], c4["last_touchpoint"], c4["evidence_text"],
            c4["evidence"], c4["ended_at"]) == ("V5", "ended_unresolved", "abandoned", "farewell", "bye", None, t(2, 15, 5))


def _daily(con):
    return [(r["dt"], r["run_id"], r["dataset"], r["issue"], r["error_kind"], r["rows"], r["written_rows"],
             r["has_quality_results"], r["quality_expectations"], r["quality_failed"], r["failed_expectations"])
            for r in rows(con, "select * from daily_quality")]


def test_daily_quality_without_quality_results(db):
    d1, d2 = date(2026, 10, 1), date(2026, 10, 2)
    assert _daily(db) == [
        (d1, RUN, "events", "duplicate", "exact_duplicate", 1, 8, False, None, None, None),
        (d1, RUN, "events", "quarantine", "bad_timestamp", 1, 8, False, None, None, None),
        (d1, RUN, "events", "quarantine", "missing_required_field", 2, 8, False, None, None, None),
        (d2, RUN, "feedback", "quarantine", "wrong_type", 1, 2, False, None, None, None),  # F4, F5 written on 10-02
    ]


def test_daily_quality_with_quality_results_and_rebuild_is_idempotent(tmp_path):
    out, path = tmp_path / "out", str(tmp_path / "q.duckdb")
    write_fixture(out)
    build_views(str(out), path, materialize=False)
    write_quality_results(out)
    build_views(str(out), path)  # views -> tables, and the quality results are picked up
    build_views(str(out), path)
    con = duckdb.connect(path, read_only=True)
    daily = _daily(con)
    assert daily[0][7:] == (True, 2, 1, ["expect_b"])
    assert daily[3][7:] == (False, None, None, None)
    kinds = dict(con.execute("select table_name, 'table' from duckdb_tables() where table_name = 'journeys'").fetchall())
    assert kinds == {"journeys": "table"}
    assert con.execute("select count(*) from stg_quality_results").fetchall() == [(2,)]


def test_cli_views_and_query_in_a_new_session(tmp_path):
    out = tmp_path / "out"
    write_fixture(out)
    runner = CliRunner()
    result = runner.invoke(app, ["views", "--out", str(out), "--db", str(tmp_path / "x.duckdb")])
    assert result.exit_code == 0, result.output
    # a separate process: nothing set but the file
    code = ("from pipelines.views import run_query; "
            f"print(run_query({str(tmp_path / 'x.duckdb')!r}, 'select count(*) from stg_events')[1])")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[(16,)]"
    result = runner.invoke(app, ["query", "--db", str(tmp_path / "x.duckdb"), "mot_funnel"])
    assert result.exit_code == 0 and "5 rows" in result.output
    csv = tmp_path / "j.csv"
    result = runner.invoke(app, ["query", "--db", str(tmp_path / "x.duckdb"), "select visit_id from journeys order by 1", "-o", str(csv)])
    assert result.exit_code == 0, result.output
    assert csv.read_text().split() == ["visit_id", "V1", "V2", "V3", "V4", "V5"]
    pq_out = tmp_path / "s.parquet"
    assert runner.invoke(app, ["query", "--db", str(tmp_path / "x.duckdb"), "servqual_gaps", "-o", str(pq_out)]).exit_code == 0
    assert pq.read_table(pq_out).num_rows == 5
    assert runner.invoke(app, ["query", "--db", str(tmp_path / "x.duckdb"), "select * from nope"]).exit_code == 2
    assert runner.invoke(app, ["views", "--out", str(out), "--db", str(tmp_path / "x.duckdb"), "--weights", "x=1"]).exit_code == 2
