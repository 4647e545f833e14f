"""Persons in full pipeline runs on tests/fixtures/identity: exact persons, guards, PII, feedback, reruns, later days."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.config import RunConfig
from pipelines.identity.identifiers import customer_nodes, hash_of, person_ids
from pipelines.pipeline import run

FIXTURES = Path(__file__).parent.parent / "fixtures" / "identity"
KEY = "test-identity-key"
PERSON_A = ("app-1", "cc-1", "br-1", "survey-9")  # survey-9: the feedback system's id, linked by the phone


def config(out: Path, day: str | None = None, **settings) -> RunConfig:
    window = {"start": day, "end": day, "lookback_days": 0} if day else {}
    return RunConfig(touchpoints=[str(FIXTURES / "events*")], feedback=[str(FIXTURES / "feedback.jsonl")], out=str(out),
                     identity_key=KEY, buckets=4, **window, **settings)


def rows(out: Path, table: str, dt: str | None = None) -> list[dict]:
    files = sorted((out / table).glob(f"dt={dt or '*'}/*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def persons_of(out: Path, table: str = "events") -> set[frozenset[str]]:
    """The customer ids of each person, as sets."""
    groups: dict[str, set[str]] = {}
    for row in rows(out, table):
        groups.setdefault(row["person_id"], set()).add(row["customer_id"])
    return {frozenset(g) for g in groups.values()}


def anchor(*customers: str, key: bytes = KEY.encode()) -> str:
    """The person id of these customer ids: `p_` + the hash of the smallest customer node."""
    return person_ids(np.array([customer_nodes(pa.array(list(customers)), key).min()]))[0].as_py()


@pytest.fixture(scope="module")
def day_one(tmp_path_factory):
    out = tmp_path_factory.mktemp("identity") / "out"
    summary = run(config(out, "2026-10-01"))
    return out, summary


def test_persons_link_chains_across_three_channels_and_nothing_else(day_one):
    out, _ = day_one
    assert persons_of(out) == {
        frozenset({"app-1", "cc-1", "br-1"}),  # app -> phone -> hotline -> account -> branch
        frozenset({"walk-1", "walk-2"}),  # one e-mail address (normalised), though the tablet does not link
        *({frozenset({f"walk-{i}"}) for i in range(3, 7)}),
        frozenset({"kiosk-1"}), frozenset({"kiosk-2"}),  # over the cap: not merged
        frozenset({"solo-1"}), frozenset({"mail-1"}), frozenset({"tel-1"}),
    }
    person = {row["customer_id"]: row["person_id"] for row in rows(out, "events")}
    assert person["app-1"] == person["br-1"] == anchor(*PERSON_A)
    assert person["solo-1"] == anchor("solo-1")


def test_the_shared_device_and_the_capped_person_are_reported(day_one):
    out, summary = day_one
    conflicts = sorted(rows(out, "identity_conflicts", "2026-10-01"), key=lambda r: r["kind"])
    assert [{k: r[k] for k in ("kind", "identifier_type", "customers", "identifiers", "limit")} for r in conflicts] == [
        {"kind": "person_cap", "identifier_type": None, "customers": 2, "identifiers": 32, "limit": 25},
        {"kind": "shared_identifier", "identifier_type": "device_id", "customers": 6, "identifiers": None, "limit": 5},
    ]
    assert conflicts[0]["person_id"] == anchor("kiosk-1", "kiosk-2")
    assert summary["identity"] == {"capped_persons": 1, "invalid.phone": 1, "customers_with_identifiers": 10,
                                   "shared_identifiers": 1}


def test_feedback_from_another_system_links_to_the_persons_latest_visit(day_one):
    out, _ = day_one
    branch_visit = next(r["visit_id"] for r in rows(out, "events") if r["event_id"] == "a4")
    feedback = {r["feedback_id"]: r for r in rows(out, "feedback")}
    assert (feedback["fa"]["person_id"], feedback["fa"]["visit_id"], feedback["fa"]["link_method"]) == (
        anchor(*PERSON_A), branch_visit, "latest_visit")
    assert (feedback["fb"]["person_id"], feedback["fb"]["link_method"]) == (anchor("survey-10"), "unlinked")


def test_identifier_values_reach_no_table_only_their_keyed_hashes(day_one):
    out, _ = day_one
    raw = [b"13706290800", b"137-0629", b"6222", b"d-7781", b"tablet-br-01", b"walk.pair", b"Walk.Pair", b"L29"]
    for path in out.rglob("*.parquet"):
        data = pq.read_table(path).to_pandas().to_csv().encode() if path.stat().st_size else b""
        assert not [value for value in raw if value in data], path
    assert "identifiers" not in pq.read_schema(next((out / "events").rglob("*.parquet"))).names
    phones = [r for r in rows(out, "identity_map") if r["identifier_type"] == "phone" and r["person_id"] == anchor(*PERSON_A)]
    assert len(phones) == 1 and len(phones[0]["identifier_hash"]) == 16  # +86 137…, 137-0629-0800, +8613706290800: one


def test_without_a_key_the_graph_hashes_with_the_outputs_own_secret_key(tmp_path):
    """No public built-in key: the hashes of phones in identity_map could be recomputed from guessed numbers."""
    def unkeyed(out: Path) -> RunConfig:
        return RunConfig(touchpoints=[str(FIXTURES / "events*")], feedback=[str(FIXTURES / "feedback.jsonl")],
                         out=str(out), buckets=4, start="2026-10-01", end="2026-10-01", lookback_days=0)

    first, second = tmp_path / "first", tmp_path / "second"
    run(unkeyed(first))
    key = bytes.fromhex((first / "_restricted" / "_keys" / "identifiers.key").read_text())
    person = {r["customer_id"]: r["person_id"] for r in rows(first, "events")}
    assert person["app-1"] == person["br-1"] == anchor(*PERSON_A, key=key)
    run(unkeyed(first))  # a rerun of the output keeps its key and its persons
    assert {r["customer_id"]: r["person_id"] for r in rows(first, "events")} == person
    run(unkeyed(second))  # another output, another key: no hash is shared
    hashes = {output: {r["identifier_hash"] for r in rows(output, "identity_map")} for output in (first, second)}
    assert hashes[first] and not hashes[first] & hashes[second]
    assert persons_of(second) == persons_of(first)


def test_a_config_without_any_key_cannot_hash_identities():
    with pytest.raises(ValueError, match="no identity key"):
        RunConfig(touchpoints=["-"], out="o").identity_key_bytes
    assert RunConfig(touchpoints=["-"], out="o", identifier_key="ab" * 32).identity_key_bytes == b"\xab" * 32


def test_a_rerun_writes_the_same_bytes(day_one, tmp_path):
    out, _ = day_one
    run(config(tmp_path / "again", "2026-10-01"))
    def digests(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*.parquet")) if p.relative_to(root).parts[0] != "runs"}
    assert digests(tmp_path / "again") == digests(out)


def test_a_later_day_merges_two_earlier_persons_without_rewriting_their_days(tmp_path):
    out = tmp_path / "out"
    run(config(out, "2026-10-01"))
    first_day = {p: p.read_bytes() for p in sorted((out / "events" / "dt=2026-10-01").glob("*.parquet"))}
    before = {r["customer_id"]: r["person_id"] for r in rows(out, "events", "2026-10-01")}
    assert before["mail-1"] != before["tel-1"]
    run(config(out, "2026-10-02"))
    assert {p: p.read_bytes() for p in first_day} == first_day  # the old partition is not rewritten
    merged = anchor("mail-1", "tel-1")
    assert {r["customer_id"]: r["person_id"] for r in rows(out, "events", "2026-10-02")} == {"tel-1": merged}
    snapshot = {r["identifier_hash"]: r for r in rows(out, "identity_map", "2026-10-02")}
    hashes = dict(zip(["mail-1", "tel-1"], hash_of(customer_nodes(pa.array(["mail-1", "tel-1"]), KEY.encode())).to_pylist()))
    assert {snapshot[hashes[c]]["person_id"] for c in hashes} == {merged}
    changed = {c: snapshot[hashes[c]]["changed_on"] for c in hashes}
    kept = next(c for c in hashes if before[c] == merged)
    assert changed == {kept: "2026-10-01", next(c for c in hashes if c != kept): "2026-10-02"}
    # an old partition's person id resolves to the current person through the map: the snapshot row of its anchor
    for customer in hashes:
        old = before[customer]
        assert snapshot[old[2:]]["person_id"] == merged
    from pipelines.views import build_views  # and so do the views: one person, one journey, over both days
    build_views(str(out), str(tmp_path / "views.duckdb"))
    assert view_rows(tmp_path / "views.duckdb", f"select customer_ids, channels, visits from person_journeys "
                                               f"where person_id = '{merged}'") == [
        {"customer_ids": ["mail-1", "tel-1"], "channels": ["email", "phone"], "visits": 3}]


def view_rows(db: Path, sql: str) -> list[dict]:
    import duckdb
    with duckdb.connect(str(db), read_only=True) as con:
        return con.sql(sql).to_arrow_table().to_pylist()


def test_person_journeys_cross_channels_within_the_gap(day_one, tmp_path):
    from pipelines.views import build_views
    out, _ = day_one
    for gap, journeys in ((7, 1), (0, 3)):
        db = tmp_path / f"gap{gap}.duckdb"
        build_views(str(out), str(db), journey_gap_days=gap)
        got = view_rows(db, f"select journey_no, visits, customer_ids, channels, channel_switches, started_at, "
                            f"ended_at, feedback_count, csat from person_journeys where person_id = '{anchor(*PERSON_A)}' "
                            f"order by journey_no")
        assert len(got) == journeys
    db = tmp_path / "gap7.duckdb"
    [journey] = view_rows(db, f"select * from person_journeys where person_id = '{anchor(*PERSON_A)}'")
    assert (journey["visits"], journey["customer_ids"], journey["channels"], journey["channel_switches"]) == (
        3, ["app-1", "br-1", "cc-1"], ["app", "phone", "branch"], 2)
    assert (journey["started_at"].isoformat(), journey["ended_at"].isoformat()) == (
        "2026-10-01T00:00:00+00:00", "2026-10-01T06:20:00+00:00")  # first app moment .. last branch moment
    assert (journey["feedback_count"], journey["csat"], journey["first_channel"], journey["last_channel"]) == (1, 2.0, "app", "branch")
    [satisfaction] = view_rows(db, f"select * from person_journey_satisfaction where person_id = '{anchor(*PERSON_A)}'")
    assert (satisfaction["moments"], satisfaction["csat"]) == (5, 2.0)
    paths = {r["channel_path"]: r["journeys"] for r in view_rows(db, "select * from channel_paths")}
    assert paths["app > phone > branch"] == 1 and paths["app > web > branch"] == 1  # person A; walk-1 + walk-2
    assert view_rows(db, "select person_id, journeys, channels, last_channel, risk_reason, csat from at_risk_persons "
                         "order by person_id") == [  # person A's branch farewell (a5) ended unresolved
        {"person_id": anchor(*PERSON_A), "journeys": 1, "channels": ["app", "phone", "branch"], "last_channel": "branch",
         "risk_reason": "ended_unresolved", "csat": 2.0}]
    conflicts = view_rows(db, "select kind, customers from stg_identity_conflicts order by kind")
    assert conflicts == [{"kind": "person_cap", "customers": 2}, {"kind": "shared_identifier", "customers": 6}]
