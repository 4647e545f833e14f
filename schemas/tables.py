"""pyarrow schemas of the output tables, version 1.

Every table is Hive-partitioned by `dt` (YYYY-MM-DD, a directory, not a column in the files)
and every row carries `run_id` and `schema_version`. Change a schema only by bumping
SCHEMA_VERSION and documenting the change in schemas/CHANGELOG.md.
"""
from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1.2"

PZB_TAG = pa.struct([("dimension", pa.string()), ("polarity", pa.string())])
EVIDENCE = pa.struct(
    [
        ("tag", pa.string()),  # e.g. "mot_step=1", "responsiveness:negative", "abc=behaviour"
        ("rule", pa.string()),  # e.g. "touchpoint:greeting", "cue:zh:久等", "signal:wait_s>600"
        ("field", pa.string()),  # touchpoint | text | comment | wait_s
        ("span", pa.string()),  # matched text (null for non-text rules)
        ("start", pa.int32()),  # character offsets in the stored (masked) text
        ("end", pa.int32()),
    ]
)
RATING_ITEM = pa.struct(
    [
        ("item", pa.string()),  # dimension name or Q1..Q22
        ("dimension", pa.string()),
        ("expectation", pa.float64()),
        ("perception", pa.float64()),
    ]
)

_LINEAGE = [
    ("source_file", pa.string()),
    ("line_no", pa.int64()),
    ("run_id", pa.string()),
    ("schema_version", pa.string()),
]

_TAGS = [
    ("pzb_tags", pa.list_(PZB_TAG)),
    ("polarity", pa.string()),
    ("evidence", pa.list_(EVIDENCE)),
    ("pii_masked", pa.int32()),
]

EVENTS = pa.schema(
    [
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("occurred_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("person_id", pa.string(), nullable=False),  # p_ + 16 hex digits; current one: identity_map
        pa.field("visit_id", pa.string(), nullable=False),
        ("visit_id_source", pa.string()),  # input | gap
        ("position_in_visit", pa.int32()),  # 1-based, ordered by occurred_at, event_id
        ("moments_in_visit", pa.int32()),
        ("is_first_moment", pa.bool_()),
        ("is_last_moment", pa.bool_()),
        ("channel", pa.string()),
        ("touchpoint", pa.string()),
        ("staff_id", pa.string()),
        ("location_id", pa.string()),
        ("duration_s", pa.float64()),
        ("wait_s", pa.float64()),
        ("text", pa.string()),  # PII-masked
        ("outcome", pa.string()),
        ("attributes", pa.string()),  # JSON object, PII-masked
        ("mot_step", pa.int8()),
        ("mot_step_name", pa.string()),
        ("mot_step_source", pa.string()),  # touchpoint | text (a cue) | model (the MOT-step model) | null
        ("mot_steps", pa.list_(pa.int8())),  # every step the moment performs, ascending; mot_step is the primary one
        ("abc_facet", pa.string()),
        *_TAGS,
        ("playbook", pa.string()),  # name@version
        *_LINEAGE,
    ]
)

FEEDBACK = pa.schema(
    [
        pa.field("feedback_id", pa.string(), nullable=False),
        pa.field("submitted_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("person_id", pa.string(), nullable=False),
        ("visit_id", pa.string()),  # linked visit (of the same person), null when unlinked
        ("link_method", pa.string()),  # visit_id | visit_id_unmatched | latest_visit | unlinked
        ("touchpoint", pa.string()),
        ("channel", pa.string()),
        ("csat", pa.int8()),
        ("nps", pa.int8()),
        ("ces", pa.int8()),
        ("comment", pa.string()),  # PII-masked
        ("ratings", pa.list_(RATING_ITEM)),
        *[
            (f"{dim}_{measure}", pa.float64())
            for dim in ("reliability", "responsiveness", "assurance", "empathy", "tangibles")
            for measure in ("expectation", "perception", "gap")
        ],
        *_TAGS,
        ("playbook", pa.string()),
        *_LINEAGE,
    ]
)

QUARANTINE = pa.schema(
    [
        ("dataset", pa.string()),  # events | feedback
        ("record_id", pa.string()),  # event_id / feedback_id when it could be read
        ("error_kind", pa.string()),  # pipelines.ingest.contract.ErrorKind
        ("error_field", pa.string()),
        ("error_message", pa.string()),
        ("raw_record", pa.string()),  # PII-masked copy; the unmasked one is in quarantine_raw
        *_LINEAGE,
    ]
)

# Restricted: unmasked raw records for replay, written outside the analyst-facing tables.
QUARANTINE_RAW = pa.schema(
    [
        ("dataset", pa.string()),
        ("record_id", pa.string()),
        ("error_kind", pa.string()),
        ("raw_record", pa.string()),  # the original line (JSONL) or the row as a JSON object (CSV)
        *_LINEAGE,
    ]
)

DUPLICATES = pa.schema(
    [
        ("dataset", pa.string()),
        ("record_id", pa.string()),
        ("kept_source_file", pa.string()),
        ("kept_line_no", pa.int64()),
        *_LINEAGE,
    ]
)

# Identity (docs/identity.md): identifiers are known only by keyed hashes (16 hex digits), never by value.
IDENTITY_LINKS = pa.schema(  # dt: the day of the rows that showed the link; the graph's input, kept for later runs
    [
        ("identifier_type", pa.string()),
        ("identifier_hash", pa.string()),
        ("customer_hash", pa.string()),  # the hash of the customer_id seen with it (type customer_id)
        ("run_id", pa.string()),
        ("schema_version", pa.string()),
    ]
)
IDENTITY_MAP = pa.schema(  # dt: the day the run's window ends (a snapshot: the views read the latest)
    [
        ("identifier_type", pa.string()),  # customer_id, phone, device_id, ...
        ("identifier_hash", pa.string()),
        ("person_id", pa.string()),  # the current person of the identifier
        ("first_seen", pa.string()),  # day of the first link with it
        ("changed_on", pa.string()),  # day of the snapshot that first gave it this person_id
        ("run_id", pa.string()),
        ("schema_version", pa.string()),
    ]
)
IDENTITY_CONFLICTS = pa.schema(  # dt: as identity_map
    [
        ("kind", pa.string()),  # shared_identifier | person_cap
        ("identifier_type", pa.string()),  # shared_identifier: the identifier not used to link
        ("identifier_hash", pa.string()),
        ("person_id", pa.string()),  # person_cap: the person the component would have been (not merged)
        ("customers", pa.int64()),  # distinct customer ids seen with the identifier / in the component
        ("identifiers", pa.int64()),  # person_cap: identifiers in the component
        ("limit", pa.int64()),  # the type's max_customers / the playbook's max_identifiers
        ("run_id", pa.string()),
        ("schema_version", pa.string()),
    ]
)

TABLES = {
    "events": EVENTS,
    "feedback": FEEDBACK,
    "quarantine": QUARANTINE,
    "quarantine_raw": QUARANTINE_RAW,
    "duplicates": DUPLICATES,
    "identity_links": IDENTITY_LINKS,
    "identity_map": IDENTITY_MAP,
    "identity_conflicts": IDENTITY_CONFLICTS,
}


def table_schema(name: str) -> pa.Schema:
    """Schema of an output table with its version in the metadata, e.g. `table_schema("events")`."""
    return TABLES[name].with_metadata({"motpipe.table": name, "motpipe.schema_version": SCHEMA_VERSION})
