"""Journey stitching (events -> visits) and linking of feedback to visits, on one customer bucket.

Events that carry `visit_id` keep it. The others are grouped per customer into sessions: a new
visit starts when more than `gap_s` seconds pass since the customer's previous event (a gap of
exactly `gap_s` stays in the visit). A stitched visit's id is `v-` + a hash of the customer and
its first event id, so reruns on the same input give the same ids. Moments are ordered by
(occurred_at, event_id); the first and last moment of each visit are flagged.
"""
from __future__ import annotations

import bisect
import hashlib
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def stitched_visit_id(customer_id: str, first_event_id: str) -> str:
    digest = hashlib.blake2b(f"{customer_id}\x1f{first_event_id}".encode("utf-8"), digest_size=8).hexdigest()
    return f"v-{digest}"


def _gap_visit_ids(table: pa.Table, gap_s: float) -> pa.Array:
    """Visit ids for rows without one: sessions per customer split at inactivity gaps > gap_s."""
    order = pc.sort_indices(table, [("customer_id", "ascending"), ("occurred_at", "ascending"), ("event_id", "ascending")])
    customers = table.column("customer_id").take(order).to_numpy(zero_copy_only=False)
    micros = table.column("occurred_at").take(order).cast(pa.int64()).to_numpy()
    event_ids = table.column("event_id").take(order).to_numpy(zero_copy_only=False)
    starts = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        starts[1:] = (customers[1:] != customers[:-1]) | ((micros[1:] - micros[:-1]) > gap_s * 1_000_000)
    session = np.cumsum(starts) - 1
    first = np.flatnonzero(starts)
    session_ids = np.array([stitched_visit_id(customers[i], event_ids[i]) for i in first], dtype=object)
    ids_sorted = session_ids[session]
    ids = np.empty(len(order), dtype=object)
    ids[order.to_numpy()] = ids_sorted
    return pa.array(ids, pa.string())


def stitch_visits(events: pa.Table, gap_s: float) -> pa.Table:
    """Fill `visit_id`, add visit_id_source, position_in_visit, moments_in_visit, is_first/last_moment.

    The result is sorted by (visit_id, position_in_visit).
    """
    given = events.column("visit_id")
    missing = pc.is_null(given)
    source = pc.if_else(missing, "gap", "input")
    if pc.any(missing).as_py():
        without = events.filter(missing)
        filled = pc.replace_with_mask(given.combine_chunks(), missing.combine_chunks(), _gap_visit_ids(without, gap_s))
    else:
        filled = given
    events = events.set_column(events.schema.get_field_index("visit_id"), "visit_id", filled)
    events = events.append_column("visit_id_source", source)
    events = events.sort_by([("visit_id", "ascending"), ("occurred_at", "ascending"), ("event_id", "ascending")])
    visits = events.column("visit_id").to_numpy(zero_copy_only=False)
    starts = np.r_[True, visits[1:] != visits[:-1]] if len(visits) else np.zeros(0, bool)
    first_index = np.flatnonzero(starts)
    visit_no = np.cumsum(starts) - 1
    sizes = np.diff(np.r_[first_index, len(visits)])
    position = np.arange(len(visits)) - first_index[visit_no] + 1
    moments = sizes[visit_no]
    return (
        events.append_column("position_in_visit", pa.array(position, pa.int32()))
        .append_column("moments_in_visit", pa.array(moments, pa.int32()))
        .append_column("is_first_moment", pa.array(position == 1))
        .append_column("is_last_moment", pa.array(position == moments))
    )


def visit_ends(stitched: pa.Table) -> pa.Table:
    """One row per (customer, visit): customer_id, visit_id, ended_at (time of the visit's last moment).

    A visit whose events name two customers gives a row for each, so both customers' feedback finds it.
    """
    ends = stitched.group_by("visit_id").aggregate([("occurred_at", "max")]).rename_columns(["visit_id", "ended_at"])
    pairs = stitched.group_by(["customer_id", "visit_id"]).aggregate([])
    return pairs.join(ends, "visit_id").select(["customer_id", "visit_id", "ended_at"])


def link_feedback(feedback: pa.Table, visits: pa.Table, window_s: float) -> pa.Table:
    """Set `visit_id` and `link_method` on feedback rows.

    - `visit_id`: its visit_id names a visit of this customer in this run;
    - `visit_id_unmatched`: it names no visit of this customer in this run (the id is kept);
    - `latest_visit`: no visit_id; linked to the customer's latest visit that ended at or before
      `submitted_at`, at most `window_s` seconds before;
    - `unlinked`: none of the above (visit_id stays null).
    """
    known = set(zip(visits.column("customer_id").to_pylist(), visits.column("visit_id").to_pylist()))
    ends_by_customer: dict[str, list[tuple[object, str]]] = defaultdict(list)
    for customer, visit, ended in zip(*(visits.column(c).to_pylist() for c in ("customer_id", "visit_id", "ended_at"))):
        ends_by_customer[customer].append((ended, visit))
    for ends in ends_by_customer.values():
        ends.sort()
    visit_ids, methods = [], []
    for customer, visit, submitted in zip(*(feedback.column(c).to_pylist() for c in ("customer_id", "visit_id", "submitted_at"))):
        if visit is not None:
            visit_ids.append(visit)
            methods.append("visit_id" if (customer, visit) in known else "visit_id_unmatched")
            continue
        ends = ends_by_customer.get(customer, [])
        index = bisect.bisect_right(ends, (submitted, "\U0010ffff")) - 1
        if index >= 0 and (submitted - ends[index][0]).total_seconds() <= window_s:
            visit_ids.append(ends[index][1])
            methods.append("latest_visit")
        else:
            visit_ids.append(None)
            methods.append("unlinked")
    feedback = feedback.set_column(feedback.schema.get_field_index("visit_id"), "visit_id", pa.array(visit_ids, pa.string()))
    return feedback.append_column("link_method", pa.array(methods, pa.string()))
