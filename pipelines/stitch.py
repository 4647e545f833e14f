"""Journey stitching (events -> visits) and linking of feedback to visits, on one customer bucket.

Events that carry `visit_id` keep it. The others are grouped per customer into sessions: a new
visit starts when more than `gap_s` seconds pass since the customer's previous event (a gap of
exactly `gap_s` stays in the visit). A stitched visit's id is `v-` + a hash of the customer and
its first event id, so reruns on the same input give the same ids; with a pseudonymisation key the hash is keyed,
so the published event ids cannot be used to test guesses of the raw customer id behind a pseudonym. Moments are ordered by
(occurred_at, event_id); the first and last moment of each visit are flagged.
"""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.dedup import run_starts


def stitched_visit_id(customer_id: str, first_event_id: str, key: bytes | None = None) -> str:
    digest = hashlib.blake2b(f"{customer_id}\x1f{first_event_id}".encode("utf-8"), digest_size=8,
                             key=hashlib.sha256(key).digest() if key else b"").hexdigest()
    return f"v-{digest}"


def _gap_visit_ids(table: pa.Table, gap_s: float, key: bytes | None) -> pa.Array:
    """Visit ids for rows without one: sessions per customer split at inactivity gaps > gap_s."""
    order = pc.sort_indices(table, [("customer_id", "ascending"), ("occurred_at", "ascending"), ("event_id", "ascending")])
    micros = table.column("occurred_at").take(order).cast(pa.int64()).to_numpy()
    starts = run_starts(table.column("customer_id").take(order))
    starts[1:] |= np.diff(micros) > gap_s * 1_000_000
    first = order.take(pa.array(np.flatnonzero(starts)))
    customers, event_ids = (table.column(c).take(first).to_pylist() for c in ("customer_id", "event_id"))
    session_ids = pa.array([stitched_visit_id(c, e, key) for c, e in zip(customers, event_ids)], pa.string())
    session = np.empty(len(order), dtype=np.int64)
    session[order.to_numpy()] = np.cumsum(starts) - 1
    return session_ids.take(pa.array(session))


def stitch_visits(events: pa.Table, gap_s: float, key: bytes | None = None) -> pa.Table:
    """Fill `visit_id`, add visit_id_source, position_in_visit, moments_in_visit, is_first/last_moment.

    Rows keep their input order (positions come from a sort of the row indices, no copy of the rows).
    """
    given = events.column("visit_id")
    missing = pc.is_null(given)
    source = pc.if_else(missing, "gap", "input")
    if pc.any(missing).as_py():
        without = events.filter(missing)
        filled = pc.replace_with_mask(given.combine_chunks(), missing.combine_chunks(), _gap_visit_ids(without, gap_s, key))
    else:
        filled = given
    events = events.set_column(events.schema.get_field_index("visit_id"), "visit_id", filled)
    events = events.append_column("visit_id_source", source)
    order = pc.sort_indices(events, [(c, "ascending") for c in ("visit_id", "occurred_at", "event_id")])
    starts = run_starts(events.column("visit_id").take(order))
    first_index = np.flatnonzero(starts)
    visit_no = np.cumsum(starts) - 1
    sizes = np.diff(np.r_[first_index, len(starts)])
    position, moments = np.empty(len(starts), np.int32), np.empty(len(starts), np.int32)
    position[order.to_numpy()] = np.arange(len(starts)) - first_index[visit_no] + 1
    moments[order.to_numpy()] = sizes[visit_no]
    return (
        events.append_column("position_in_visit", pa.array(position))
        .append_column("moments_in_visit", pa.array(moments))
        .append_column("is_first_moment", pa.array(position == 1))
        .append_column("is_last_moment", pa.array(position == moments))
    )


def with_visit_ends(stitched: pa.Table) -> pa.Table:
    """`stitched` (whole visits) with `visit_ended_at`: the time of each row's visit's last moment, so that the visit
    ends can be taken later from any part of a visit's rows (`visit_ends`)."""
    ends = stitched.group_by("visit_id").aggregate([("occurred_at", "max")])
    index = pc.index_in(stitched.column("visit_id"), ends.column("visit_id"))
    return stitched.append_column("visit_ended_at", ends.column("occurred_at_max").take(index))


def visit_ends(stitched: pa.Table, by: tuple[str, ...] = ("customer_id",)) -> pa.Table:
    """One row per (customer, visit): the `by` columns, visit_id, ended_at (time of the visit's last moment: from
    `visit_ended_at` where the rows have it, else of these rows, which must then be whole visits).

    A visit whose events name two customers gives a row for each, so both customers' feedback finds it.
    """
    if "visit_ended_at" not in stitched.column_names:
        stitched = with_visit_ends(stitched)
    pairs = stitched.group_by([*by, "visit_id"]).aggregate([("visit_ended_at", "max")])
    return pairs.rename_columns([*by, "visit_id", "ended_at"])


def _known_visits(feedback: pa.Table, visits: pa.Table, by: str) -> np.ndarray:
    """Whether each feedback row's (`by`, visit_id) names a row of `visits`."""
    rows = pa.table({"customer_id": feedback.column(by), "visit_id": feedback.column("visit_id"),
                     "row": pa.array(np.arange(feedback.num_rows))})
    pairs = visits.select([by, "visit_id"]).rename_columns(["customer_id", "visit_id"]).group_by(
        ["customer_id", "visit_id"]).aggregate([])
    found = rows.join(pairs, ["customer_id", "visit_id"], join_type="inner").column("row").to_numpy()
    known = np.zeros(feedback.num_rows, dtype=bool)
    known[found] = True
    return known


def _timeline_rows(table: pa.Table, time_column: str, visit_ids: pa.ChunkedArray, is_feedback: bool, by: str) -> pa.Table:
    """customer_id (the `by` column), at (the time in µs), is_feedback, visit_id: visit ends or submissions for `_latest_visits`."""
    return pa.table({"customer_id": table.column(by), "at": table.column(time_column).cast(pa.int64()),
                     "is_feedback": pa.repeat(is_feedback, table.num_rows), "visit_id": visit_ids})


def _latest_visits(feedback: pa.Table, visits: pa.Table, by: str) -> tuple[np.ndarray, np.ndarray]:
    """For each feedback row: (index in `visits` of its customer's latest visit that ended at or before
    `submitted_at`, -1 if none; microseconds from that end to submitted_at).

    One sort of visit ends and submissions together by (customer, time, visits first, visit_id); a submission's
    latest visit is then the last visit row before it, if it belongs to the same customer.
    """
    n_visits = visits.num_rows
    timeline = pa.concat_tables([
        _timeline_rows(visits, "ended_at", visits.column("visit_id"), False, by),
        _timeline_rows(feedback, "submitted_at", pa.nulls(feedback.num_rows, pa.string()), True, by),
    ])
    order = pc.sort_indices(timeline, [("customer_id", "ascending"), ("at", "ascending"), ("is_feedback", "ascending"),
                                       ("visit_id", "ascending")]).to_numpy()
    positions = np.arange(len(order))
    last_visit = np.maximum.accumulate(np.where(order < n_visits, positions, -1))
    new_customer = run_starts(timeline.column("customer_id").take(order))
    customer_start = np.maximum.accumulate(np.where(new_customer, positions, 0))
    latest = np.where((last_visit >= 0) & (last_visit >= customer_start), order[np.maximum(last_visit, 0)], -1)
    at = timeline.column("at").to_numpy()
    submissions = order >= n_visits
    rows, latest = order[submissions] - n_visits, latest[submissions]
    index, waited = np.full(feedback.num_rows, -1), np.zeros(feedback.num_rows, dtype=np.int64)
    index[rows] = latest
    waited[rows] = at[rows + n_visits] - at[np.maximum(latest, 0)]
    return index, waited


_LINK_METHODS = pa.array(["visit_id", "visit_id_unmatched", "latest_visit", "unlinked"], pa.string())


def link_feedback(feedback: pa.Table, visits: pa.Table, window_s: float, by: str = "customer_id") -> pa.Table:
    """Set `visit_id` and `link_method` on feedback rows.

    Customers are told apart by the `by` column (the pipeline links by person_id: a person's latest visit).

    - `visit_id`: its visit_id names a visit of this customer in this run;
    - `visit_id_unmatched`: it names no visit of this customer in this run (the id is kept);
    - `latest_visit`: no visit_id; linked to the customer's latest visit that ended at or before
      `submitted_at`, at most `window_s` seconds before (the latest by (ended_at, visit_id));
    - `unlinked`: none of the above (visit_id stays null).
    """
    given = pc.is_valid(feedback.column("visit_id")).to_numpy(zero_copy_only=False)
    index, waited = _latest_visits(feedback, visits, by)
    linked = ~given & (index >= 0) & (waited / 1e6 <= window_s)  # seconds as timedelta.total_seconds() gives them
    method = np.select([given & _known_visits(feedback, visits, by), given, linked], [0, 1, 2], 3)  # in _LINK_METHODS
    latest = visits.column("visit_id").take(pa.array(index, mask=~linked))
    visit_ids = pc.coalesce(feedback.column("visit_id"), latest)
    feedback = feedback.set_column(feedback.schema.get_field_index("visit_id"), "visit_id", visit_ids)
    return feedback.append_column("link_method", _LINK_METHODS.take(pa.array(method)))
