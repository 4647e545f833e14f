"""Journey stitching (events -> visits), visit ends and feedback linking."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from pipelines.ingest.contract import DEFAULT_CHANNELS
from pipelines.ingest.reader import VALID_SCHEMAS
from pipelines.stitch import link_feedback, stitch_visits, stitched_visit_id, visit_ends
from pipelines.ingest.validate import validate_event

UTC = timezone.utc
GAP_S = 30 * 60
WEEK_S = 7 * 86400
TS = pa.timestamp("us", tz="UTC")
EVENT_SCHEMA = pa.schema([("event_id", pa.string()), ("occurred_at", TS), ("customer_id", pa.string()),
                          ("visit_id", pa.string()), ("touchpoint", pa.string())])
FEEDBACK_SCHEMA = pa.schema([("feedback_id", pa.string()), ("submitted_at", TS), ("customer_id", pa.string()),
                             ("visit_id", pa.string()), ("csat", pa.int8())])
VISITS_SCHEMA = pa.schema([("customer_id", pa.string()), ("visit_id", pa.string()), ("ended_at", TS)])


def at(text: str) -> datetime:
    """'2026-10-01 10:00' (UTC) or with seconds/fractions."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def ev(event_id: str, when: str, customer: str = "c1", visit: str | None = None) -> dict:
    return {"event_id": event_id, "occurred_at": at(when), "customer_id": customer, "visit_id": visit,
            "touchpoint": "greeting"}


def events(*rows: dict) -> pa.Table:
    return pa.Table.from_pylist(list(rows), schema=EVENT_SCHEMA)


def v(customer: str, first_event: str) -> str:
    return stitched_visit_id(customer, first_event)


def moments(stitched: pa.Table) -> dict[str, tuple]:
    """event_id -> (visit_id, visit_id_source, position, moments, is_first, is_last)."""
    columns = ["event_id", "visit_id", "visit_id_source", "position_in_visit", "moments_in_visit", "is_first_moment",
               "is_last_moment"]
    return {row[0]: tuple(row[1:]) for row in zip(*(stitched.column(c).to_pylist() for c in columns))}


def assert_in_input_order(stitched: pa.Table, table: pa.Table) -> None:
    assert stitched.column("event_id").to_pylist() == table.column("event_id").to_pylist()


# --- stitched ids ----------------------------------------------------------------------------


def test_stitched_visit_id_is_pinned():
    assert stitched_visit_id("c1", "e1") == "v-63f4abbdf36fffac"
    keyed = stitched_visit_id("c1", "e1", b"secret")  # with --pseudonymize-key: no guessing the raw customer id
    assert keyed.startswith("v-") and len(keyed) == 18 and keyed not in ("v-63f4abbdf36fffac", stitched_visit_id("c1", "e1", b"other"))
    assert stitched_visit_id("c1", "e1") != stitched_visit_id("c1", "e2") != stitched_visit_id("c2", "e1")
    # the separator keeps ("c1", "2e") and ("c12", "e") apart
    assert stitched_visit_id("c1", "2e") != stitched_visit_id("c12", "e")


# --- stitch_visits ---------------------------------------------------------------------------


def test_gap_boundary():
    table = events(
        ev("e1", "2026-10-01 10:00:00"),
        ev("e2", "2026-10-01 10:30:00"),  # exactly gap_s later: same visit
        ev("e3", "2026-10-01 11:00:00.000001"),  # gap_s + 1 µs later: new visit
        ev("e4", "2026-10-01 11:10:00"),
    )
    stitched = stitch_visits(table, GAP_S)
    assert moments(stitched) == {
        "e1": (v("c1", "e1"), "gap", 1, 2, True, False),
        "e2": (v("c1", "e1"), "gap", 2, 2, False, True),
        "e3": (v("c1", "e3"), "gap", 1, 2, True, False),
        "e4": (v("c1", "e3"), "gap", 2, 2, False, True),
    }
    assert_in_input_order(stitched, table)


def test_single_event_visit_is_first_and_last():
    stitched = stitch_visits(events(ev("e1", "2026-10-01 10:00")), GAP_S)
    assert moments(stitched) == {"e1": (v("c1", "e1"), "gap", 1, 1, True, True)}


def test_out_of_order_input_and_ties_by_event_id():
    table = events(
        ev("e3", "2026-10-01 10:20"),
        ev("e-b", "2026-10-01 10:00"),
        ev("e4", "2026-10-01 12:00"),
        ev("e-a", "2026-10-01 10:00"),  # same instant as e-b: ordered by event_id
    )
    stitched = stitch_visits(table, GAP_S)
    assert moments(stitched) == {
        "e-a": (v("c1", "e-a"), "gap", 1, 3, True, False),
        "e-b": (v("c1", "e-a"), "gap", 2, 3, False, False),
        "e3": (v("c1", "e-a"), "gap", 3, 3, False, True),
        "e4": (v("c1", "e4"), "gap", 1, 1, True, True),
    }
    assert_in_input_order(stitched, table)


def test_customers_are_stitched_separately():
    stitched = stitch_visits(events(
        ev("a1", "2026-10-01 10:00", "c1"),
        ev("b1", "2026-10-01 10:05", "c2"),
        ev("a2", "2026-10-01 10:10", "c1"),
        ev("b2", "2026-10-01 10:20", "c2"),
        ev("b3", "2026-10-01 11:00", "c2"),  # 40 min after b2
        ev("a3", "2026-10-01 10:35", "c1"),  # 25 min after a2
    ), GAP_S)
    assert moments(stitched) == {
        "a1": (v("c1", "a1"), "gap", 1, 3, True, False),
        "a2": (v("c1", "a1"), "gap", 2, 3, False, False),
        "a3": (v("c1", "a1"), "gap", 3, 3, False, True),
        "b1": (v("c2", "b1"), "gap", 1, 2, True, False),
        "b2": (v("c2", "b1"), "gap", 2, 2, False, True),
        "b3": (v("c2", "b3"), "gap", 1, 1, True, True),
    }


def test_visits_across_midnight_and_days():
    stitched = stitch_visits(events(
        ev("e1", "2026-09-30 23:50"),
        ev("e2", "2026-10-01 00:10"),  # 20 min later, next day: same visit
        ev("e3", "2026-10-01 00:35"),
        ev("e4", "2026-10-02 09:00"),
        ev("e5", "2026-10-05 09:00"),
    ), GAP_S)
    assert moments(stitched) == {
        "e1": (v("c1", "e1"), "gap", 1, 3, True, False),
        "e2": (v("c1", "e1"), "gap", 2, 3, False, False),
        "e3": (v("c1", "e1"), "gap", 3, 3, False, True),
        "e4": (v("c1", "e4"), "gap", 1, 1, True, True),
        "e5": (v("c1", "e5"), "gap", 1, 1, True, True),
    }


def test_given_visit_ids_are_kept():
    table = events(
        ev("e1", "2026-10-01 10:00"),
        ev("e2", "2026-10-01 10:40", visit="V1"),
        ev("e3", "2026-10-01 11:20"),  # 80 min after e1; e2 with its own visit does not bridge the gap
        ev("e4", "2026-10-01 09:00", visit="V1"),
        ev("e5", "2026-10-03 09:00", visit="V1"),  # given visits are not split at gaps
        ev("e6", "2026-10-01 11:30", "c2", visit="V2"),
    )
    stitched = stitch_visits(table, GAP_S)
    assert moments(stitched) == {
        "e1": (v("c1", "e1"), "gap", 1, 1, True, True),
        "e3": (v("c1", "e3"), "gap", 1, 1, True, True),
        "e4": ("V1", "input", 1, 3, True, False),
        "e2": ("V1", "input", 2, 3, False, False),
        "e5": ("V1", "input", 3, 3, False, True),
        "e6": ("V2", "input", 1, 1, True, True),
    }
    assert_in_input_order(stitched, table)


def test_only_given_visit_ids():
    stitched = stitch_visits(events(ev("e2", "2026-10-01 10:05", visit="V1"), ev("e1", "2026-10-01 10:00", visit="V1")),
                             GAP_S)
    assert stitched.column("event_id").to_pylist() == ["e2", "e1"]  # input order
    assert moments(stitched) == {"e1": ("V1", "input", 1, 2, True, False), "e2": ("V1", "input", 2, 2, False, True)}


def test_output_columns_and_types():
    stitched = stitch_visits(events(ev("e1", "2026-10-01 10:00"), ev("e2", "2026-10-01 10:05", visit="V1")), GAP_S)
    assert stitched.schema == pa.schema([
        *EVENT_SCHEMA, ("visit_id_source", pa.string()), ("position_in_visit", pa.int32()),
        ("moments_in_visit", pa.int32()), ("is_first_moment", pa.bool_()), ("is_last_moment", pa.bool_())])
    assert stitched.column("visit_id").null_count == 0


def test_stitched_ids_are_deterministic():
    minutes = [0, 5, 50, 52, 140, 141, 141, 200, 260, 262, 300, 301, 302, 400, 500, 520, 540, 560, 600, 700, 701,
               702, 760, 900]
    rows = [ev(f"e{i:02d}", (at("2026-10-01 22:00") + timedelta(minutes=m)).isoformat()[:26], f"c{i % 2}")
            for i, m in enumerate(minutes)]
    rows.append(ev("x1", "2026-10-01 22:00", "c0", visit="V9"))
    expected = moments(stitch_visits(events(*rows), GAP_S))
    assert len({m[0] for m in expected.values()}) == 22  # c0: 10 gap visits, c1: 11, and V9
    shuffler = random.Random(3)
    for _ in range(5):
        shuffled = rows[:]
        shuffler.shuffle(shuffled)
        assert moments(stitch_visits(events(*shuffled), GAP_S)) == expected
    # several chunks, as after concatenating batches
    chunked = pa.concat_tables([events(*rows[:10]), events(*rows[10:])])
    assert moments(stitch_visits(chunked, GAP_S)) == expected


def test_empty_table():
    stitched = stitch_visits(events(), GAP_S)
    assert stitched.num_rows == 0
    assert stitched.column_names == [*EVENT_SCHEMA.names, "visit_id_source", "position_in_visit", "moments_in_visit",
                                     "is_first_moment", "is_last_moment"]
    assert visit_ends(stitched).num_rows == 0


def test_stitch_validated_events():
    """The real input of stitching: read_validated rows (all contract columns plus lineage)."""
    rows = []
    for line_no, (event_id, when) in enumerate([("e1", "2026-10-01T18:00:00+08:00"), ("e2", "2026-10-01T10:20:00Z")], 1):
        clean = validate_event({"event_id": event_id, "occurred_at": when, "customer_id": "c1", "channel": "branch",
                                "touchpoint": "greeting"}, frozenset(DEFAULT_CHANNELS), UTC)
        rows.append({**clean, "source_file": "a.jsonl", "line_no": line_no})
    stitched = stitch_visits(pa.Table.from_pylist(rows, schema=VALID_SCHEMAS["events"]), GAP_S)
    assert moments(stitched) == {"e1": (v("c1", "e1"), "gap", 1, 2, True, False),
                                 "e2": (v("c1", "e1"), "gap", 2, 2, False, True)}
    assert stitched.column("line_no").to_pylist() == [1, 2]


# --- visit_ends ------------------------------------------------------------------------------


def sorted_rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: (r["customer_id"], r["visit_id"]))


def test_visit_ends():
    stitched = stitch_visits(events(
        ev("e1", "2026-10-01 10:00"), ev("e2", "2026-10-01 10:20"), ev("e3", "2026-10-01 12:00"),
        ev("b1", "2026-10-01 09:00", "c2", visit="V2"), ev("b2", "2026-10-02 08:00", "c2", visit="V2"),
    ), GAP_S)
    ends = visit_ends(stitched)
    assert ends.schema == VISITS_SCHEMA
    assert sorted_rows(ends) == sorted([
        {"customer_id": "c1", "visit_id": v("c1", "e1"), "ended_at": at("2026-10-01 10:20")},
        {"customer_id": "c1", "visit_id": v("c1", "e3"), "ended_at": at("2026-10-01 12:00")},
        {"customer_id": "c2", "visit_id": "V2", "ended_at": at("2026-10-02 08:00")},
    ], key=lambda r: (r["customer_id"], r["visit_id"]))


def test_visit_ends_of_a_visit_with_two_customers():
    stitched = stitch_visits(events(ev("e1", "2026-10-01 10:00", "c1", visit="V"),
                                    ev("e2", "2026-10-01 10:30", "c2", visit="V")), GAP_S)
    assert sorted_rows(visit_ends(stitched)) == [
        {"customer_id": "c1", "visit_id": "V", "ended_at": at("2026-10-01 10:30")},
        {"customer_id": "c2", "visit_id": "V", "ended_at": at("2026-10-01 10:30")},
    ]


# --- link_feedback ---------------------------------------------------------------------------


def fb(feedback_id: str, when: datetime | str, customer: str = "c1", visit: str | None = None) -> dict:
    return {"feedback_id": feedback_id, "submitted_at": at(when) if isinstance(when, str) else when,
            "customer_id": customer, "visit_id": visit, "csat": 4}


def visits(*rows: tuple[str, str, str]) -> pa.Table:
    return pa.Table.from_pylist([{"customer_id": c, "visit_id": vid, "ended_at": at(t)} for c, vid, t in rows],
                                schema=VISITS_SCHEMA)


VISITS = visits(("c1", "VA", "2026-10-01 10:30"), ("c1", "VB", "2026-10-02 09:00"), ("c2", "VC", "2026-10-01 11:00"))


def links(feedback_rows: list[dict], visit_table: pa.Table = VISITS, window_s: float = WEEK_S) -> dict[str, tuple]:
    linked = link_feedback(pa.Table.from_pylist(feedback_rows, schema=FEEDBACK_SCHEMA), visit_table, window_s)
    return {f: (vid, m) for f, vid, m in zip(*(linked.column(c).to_pylist() for c in ("feedback_id", "visit_id",
                                                                                       "link_method")))}


def test_link_by_visit_id():
    assert links([fb("f1", "2026-10-05 10:00", visit="VA"), fb("f2", "2026-10-05 10:00", visit="V-ZZ"),
                  fb("f3", "2026-09-01 10:00", visit="VB")]) == {
        "f1": ("VA", "visit_id"),
        "f2": ("V-ZZ", "visit_id_unmatched"),
        "f3": ("VB", "visit_id"),  # a named visit links whatever the times
    }


def test_link_by_visit_id_of_another_customer_is_unmatched():
    assert links([fb("f1", "2026-10-01 12:00", "c1", visit="VC")]) == {"f1": ("VC", "visit_id_unmatched")}


def test_latest_visit_ended_before_submission():
    assert links([
        fb("f3", "2026-10-01 12:00"),  # VA ended, VB not yet: VA, not the later VB
        fb("f4", "2026-10-03 00:00"),  # both ended: the latest, VB
        fb("f9", "2026-10-01 10:30"),  # exactly at VA's end
        fb("g1", "2026-10-01 11:30", "c2"),
    ]) == {"f3": ("VA", "latest_visit"), "f4": ("VB", "latest_visit"), "f9": ("VA", "latest_visit"),
           "g1": ("VC", "latest_visit")}


def test_submission_before_any_visit_ended_is_unlinked():
    assert links([fb("f5", "2026-10-01 10:29:59.999999")]) == {"f5": (None, "unlinked")}


def test_link_window_boundary_is_inclusive():
    end_b = at("2026-10-02 09:00")
    assert links([fb("f6", end_b + timedelta(seconds=WEEK_S)),
                  fb("f7", end_b + timedelta(seconds=WEEK_S, microseconds=1))]) == {
        "f6": ("VB", "latest_visit"), "f7": (None, "unlinked")}


def test_link_window_zero_links_only_exact_end():
    assert links([fb("f1", "2026-10-01 10:30"), fb("f2", "2026-10-01 10:30:01")], window_s=0) == {
        "f1": ("VA", "latest_visit"), "f2": (None, "unlinked")}


def test_customer_without_visits_is_unlinked():
    assert links([fb("f8", "2026-10-01 12:00", "c9")]) == {"f8": (None, "unlinked")}
    assert links([fb("f8", "2026-10-01 12:00")], visit_table=visits()) == {"f8": (None, "unlinked")}


def test_link_feedback_columns_and_order():
    rows = [fb("f2", "2026-10-01 12:00"), fb("f1", "2026-10-01 12:00", visit="VB"), fb("f3", "2026-10-01 09:00")]
    linked = link_feedback(pa.Table.from_pylist(rows, schema=FEEDBACK_SCHEMA), VISITS, WEEK_S)
    assert linked.schema == pa.schema([*FEEDBACK_SCHEMA, ("link_method", pa.string())])
    assert linked.select(["feedback_id", "visit_id", "link_method", "csat"]).to_pylist() == [
        {"feedback_id": "f2", "visit_id": "VA", "link_method": "latest_visit", "csat": 4},
        {"feedback_id": "f1", "visit_id": "VB", "link_method": "visit_id", "csat": 4},
        {"feedback_id": "f3", "visit_id": None, "link_method": "unlinked", "csat": 4},
    ]


def test_link_empty_feedback():
    linked = link_feedback(FEEDBACK_SCHEMA.empty_table(), VISITS, WEEK_S)
    assert linked.num_rows == 0 and linked.column_names[-1] == "link_method"


def test_latest_visit_ties_on_the_end_time_go_to_the_greatest_visit_id():
    tied = visits(("c1", "VB", "2026-10-01 10:30"), ("c1", "VA", "2026-10-01 10:30"), ("c1", "V0", "2026-10-01 10:29"))
    assert links([fb("f1", "2026-10-01 10:30"), fb("f2", "2026-10-01 12:00")], visit_table=tied) == {
        "f1": ("VB", "latest_visit"), "f2": ("VB", "latest_visit")}


def reference_links(feedback: list[dict], visit_rows: list[tuple[str, str, datetime]], window_s: float) -> dict:
    """link_feedback's rules one row at a time."""
    known = {(c, vid) for c, vid, _ in visit_rows}
    result = {}
    for row in feedback:
        if row["visit_id"] is not None:
            result[row["feedback_id"]] = (row["visit_id"], "visit_id" if (row["customer_id"], row["visit_id"]) in known
                                          else "visit_id_unmatched")
            continue
        ended = [(end, vid) for c, vid, end in visit_rows if c == row["customer_id"] and end <= row["submitted_at"]]
        latest = max(ended, default=None)
        if latest and (row["submitted_at"] - latest[0]).total_seconds() <= window_s:
            result[row["feedback_id"]] = (latest[1], "latest_visit")
        else:
            result[row["feedback_id"]] = (None, "unlinked")
    return result


def test_link_feedback_equals_the_row_by_row_rules():
    shuffler = random.Random(4)
    start = at("2026-10-01 00:00")
    offsets = [0, 1, 59, 3600, 86400, WEEK_S, WEEK_S + 1]
    customers, visit_names = ["c1", "c2", "c3"], ["V1", "V2", "V3", "V4"]

    def when() -> datetime:
        return start + timedelta(seconds=shuffler.choice(offsets) * shuffler.randint(0, 3))

    for _ in range(200):
        ends = {(shuffler.choice(customers), shuffler.choice(visit_names)): when()
                for _ in range(shuffler.randint(0, 8))}
        visit_rows = [(c, vid, end) for (c, vid), end in ends.items()]
        rows = [fb(f"f{i}", when(), shuffler.choice([*customers, "c9"]), shuffler.choice([None, None, *visit_names, "VX"]))
                for i in range(shuffler.randint(0, 10))]
        window_s = shuffler.choice([0, 60, 86400, WEEK_S])
        table = visits(*((c, vid, end.isoformat()[:19].replace("T", " ")) for c, vid, end in visit_rows))
        assert links(rows, table, window_s) == reference_links(rows, visit_rows, window_s)


def test_stitch_then_link():
    stitched = stitch_visits(events(ev("e1", "2026-10-01 10:00"), ev("e2", "2026-10-01 10:20"),
                                    ev("e3", "2026-10-01 15:00")), GAP_S)
    assert links([fb("f1", "2026-10-01 14:00"), fb("f2", "2026-10-01 15:00"), fb("f3", "2026-10-01 10:10")],
                 visit_table=visit_ends(stitched)) == {
        "f1": (v("c1", "e1"), "latest_visit"), "f2": (v("c1", "e3"), "latest_visit"), "f3": (None, "unlinked")}


@pytest.mark.parametrize("gap_minutes", [1, 30, 90])
def test_gap_parameter(gap_minutes):
    table = events(ev("e1", "2026-10-01 10:00"), ev("e2", "2026-10-01 10:45"), ev("e3", "2026-10-01 11:00"))
    visit_of = {e: m[0] for e, m in moments(stitch_visits(table, gap_minutes * 60)).items()}
    expected = {1: [v("c1", "e1"), v("c1", "e2"), v("c1", "e3")],
                30: [v("c1", "e1"), v("c1", "e2"), v("c1", "e2")],
                90: [v("c1", "e1")] * 3}[gap_minutes]
    assert [visit_of[e] for e in ("e1", "e2", "e3")] == expected
