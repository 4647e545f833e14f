"""The Great Expectations suites, one per dataset, as code.

A suite's expectations are grouped by the DuckDB query that feeds them (a `Source`), over views of
this run's rows (`events`, `feedback`, `quarantine`, `duplicates`, `summary`; `*_checked` are the
same rows or a uniform sample of them, see `row_checks_max_rows`):

* row sources: the rows of a table (or its unnested tags and ratings); DuckDB computes the metrics
  of their expectations (counts of nulls and unexpected values, the first unexpected values) in one
  aggregate query over all the rows and GE evaluates them;
* fact sources are one small row of table-level facts computed exactly in DuckDB SQL
  (uniqueness, shares, reconciliation), which GE then checks against the thresholds the same way.

Every expectation carries a severity (GE `critical` = motpipe `error`, GE `warning` = `warn`) and
`meta.check`, the name shown on the console, in `quality_results` and in Data Docs.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import great_expectations.expectations as gxe
from great_expectations.core import ExpectationSuite
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.metadata_types import FailureSeverity

from pipelines.ingest.contract import DIMENSIONS, RATING_RANGE, SCORE_RANGES, ErrorKind
from pipelines.quality.settings import QualitySettings

ERROR, WARN = "error", "warn"
GX_SEVERITY = {ERROR: FailureSeverity.CRITICAL, WARN: FailureSeverity.WARNING}
UNMASKED_PII = "unmasked_pii"  # column added to row sources by the checkpoint: "column:kind,..." or null


@dataclass(frozen=True)
class Window:
    """The run's time window, and the check time (nothing may lie after it)."""

    start: datetime
    end: datetime
    now: datetime


@dataclass(frozen=True)
class Source:
    """A DuckDB query and the expectations validated on its rows."""

    sql: str
    expectations: list[Expectation]
    streamed: bool = True  # False: facts, one small row of table-level figures (never sampled)
    pii_columns: tuple[str, ...] = ()  # text columns (in the query) scanned for unmasked PII


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    sources: dict[str, Source]

    def expectation_suite(self) -> ExpectationSuite:
        """All expectations of the suite in one GE suite (what Data Docs show)."""
        return ExpectationSuite(name=self.name, expectations=[e for s in self.sources.values() for e in s.expectations])


def expect(kind: type[Expectation], check: str, severity: str, **kwargs) -> Expectation:
    """A GE expectation named `check` with motpipe severity `error` or `warn`."""
    return kind(severity=GX_SEVERITY[severity], meta={"check": check}, **kwargs)


def not_null(*columns: str) -> list[Expectation]:
    return [expect(gxe.ExpectColumnValuesToNotBeNull, f"{c} not null", ERROR, column=c) for c in columns]


def between(column: str, low: float | datetime | None, high: float | datetime | None, severity: str = ERROR, check: str | None = None) -> Expectation:
    return expect(gxe.ExpectColumnValuesToBeBetween, check or f"{column} in {low}..{high}", severity,
                  column=column, min_value=low, max_value=high)


def timestamps(column: str, window: Window) -> list[Expectation]:
    return [
        between(column, None, window.now, ERROR, f"{column} not in the future"),
        between(column, window.start, window.end, WARN, f"{column} inside the run's window"),
    ]


def at_most(column: str, limit: float, severity: str, check: str) -> Expectation:
    return expect(gxe.ExpectColumnMaxToBeBetween, check, severity, column=column, max_value=limit)


def no_unmasked_pii() -> Expectation:
    return expect(gxe.ExpectColumnValuesToBeNull, "no unmasked PII in text columns", ERROR, column=UNMASKED_PII)


def dimension_in_set() -> Expectation:
    return expect(gxe.ExpectColumnValuesToBeInSet, "PZB dimension in allowed set", ERROR,
                  column="dimension", value_set=list(DIMENSIONS))


# Identifier columns scanned for PII besides the record ids; motpipe's own hashes in them (pseudonyms, stitched
# visit ids, whose digit runs can look like numbers) are skipped by the scan (checkpoint.pii_candidates).
SCANNED_IDS = ("customer_id", "visit_id")


def events_suite(settings: QualitySettings, window: Window, ids: tuple[str, ...]) -> SuiteSpec:
    text = ("event_id", *ids, "channel", "touchpoint", "staff_id", "location_id", "text", "outcome", "attributes",
            "mot_step_name", "evidence_spans")
    rows = Source(
        "select event_id, occurred_at, customer_id, person_id, visit_id, channel, touchpoint, staff_id, location_id, text, outcome,"
        " attributes, mot_step_name, array_to_string(list_transform(evidence, lambda e: e.span), ' ') as evidence_spans,"
        " run_id, mot_step, wait_s, duration_s from events_checked",
        [
            *not_null("event_id", "occurred_at", "customer_id", "person_id", "visit_id", "channel", "touchpoint", "run_id"),
            *timestamps("occurred_at", window),
            between("mot_step", 1, 5, check="mot_step in 1..5 or null"),
            between("wait_s", 0, None, check="wait_s >= 0"),
            between("duration_s", 0, None, check="duration_s >= 0"),
            no_unmasked_pii(),
        ],
        pii_columns=text,
    )
    tags = Source("select tag.dimension as dimension from (select unnest(pzb_tags) as tag from events_checked)",
                  [dimension_in_set()])
    facts = Source(
        "select count(*) - count(distinct event_id) as duplicate_event_ids,"
        " coalesce(avg((mot_step_source is distinct from 'touchpoint')::int), 0) as unmapped_touchpoint_share,"
        " coalesce(avg((mot_step is null and coalesce(len(pzb_tags), 0) = 0)::int), 0) as untagged_event_share,"
        " count(*) filter (where mot_step is not null and not coalesce(list_contains(mot_steps, mot_step), false))"
        " as primary_step_not_performed,"
        " (select count(*) from (select customer_id from events where customer_id is not null group by customer_id"
        "  having count(distinct person_id) > 1)) as customers_with_several_persons"
        " from events",
        [
            at_most("duplicate_event_ids", 0, ERROR, "event_id unique"),
            at_most("primary_step_not_performed", 0, ERROR, "mot_step is one of mot_steps"),
            at_most("customers_with_several_persons", 0, ERROR, "one person_id per customer_id"),
            at_most("unmapped_touchpoint_share", settings.unmapped_touchpoint_share, WARN,
                    f"unmapped touchpoint share <= {settings.unmapped_touchpoint_share}"),
            at_most("untagged_event_share", settings.untagged_event_share, WARN,
                    f"untagged event share <= {settings.untagged_event_share}"),
        ],
        streamed=False,
    )
    return SuiteSpec("events", {"rows": rows, "pzb_tags": tags, "facts": facts})


def feedback_suite(settings: QualitySettings, window: Window, ids: tuple[str, ...]) -> SuiteSpec:
    text = ("feedback_id", *ids, "link_method", "touchpoint", "channel", "comment", "evidence_spans")
    servqual = [f"{dim}_{measure}" for dim in DIMENSIONS for measure in ("expectation", "perception")]
    low, high = RATING_RANGE
    rows = Source(
        "select feedback_id, submitted_at, customer_id, person_id, visit_id, link_method, touchpoint, channel, comment,"
        " array_to_string(list_transform(evidence, lambda e: e.span), ' ') as evidence_spans, run_id, csat, nps, ces, "
        + ", ".join(servqual) + " from feedback_checked",
        [
            *not_null("feedback_id", "submitted_at", "customer_id", "person_id", "link_method", "run_id"),
            *timestamps("submitted_at", window),
            *[between(score, *SCORE_RANGES[score]) for score in ("csat", "nps", "ces")],
            *[between(column, low, high) for column in servqual],
            no_unmasked_pii(),
        ],
        pii_columns=text,
    )
    tags = Source(
        "select tag.dimension as dimension from (select unnest(pzb_tags) as tag from feedback_checked)"
        " union all select r.dimension from (select unnest(ratings) as r from feedback_checked)",
        [dimension_in_set()],
    )
    ratings = Source(
        "select r.item, r.expectation, r.perception from (select unnest(ratings) as r from feedback_checked)",
        [between("expectation", low, high, check=f"SERVQUAL rating expectation in {low}..{high}"),
         between("perception", low, high, check=f"SERVQUAL rating perception in {low}..{high}")],
    )
    facts = Source(
        "select count(*) - count(distinct feedback_id) as duplicate_feedback_ids,"
        " coalesce(avg((visit_id is not null)::int), 1) as feedback_linked_share from feedback",
        [
            at_most("duplicate_feedback_ids", 0, ERROR, "feedback_id unique"),
            expect(gxe.ExpectColumnMinToBeBetween, f"feedback linked share >= {settings.feedback_linked_share}", WARN,
                   column="feedback_linked_share", min_value=settings.feedback_linked_share),
        ],
        streamed=False,
    )
    return SuiteSpec("feedback", {"rows": rows, "pzb_tags": tags, "ratings": ratings, "facts": facts})


def quarantine_suite(settings: QualitySettings) -> SuiteSpec:
    text = ("record_id", "error_field", "error_message", "raw_record")
    rows = Source(
        "select dataset, record_id, error_kind, error_field, error_message, raw_record, source_file, line_no, run_id"
        " from quarantine_checked",
        [
            *not_null("dataset", "error_kind", "error_message", "source_file", "line_no", "run_id"),
            expect(gxe.ExpectColumnValuesToBeInSet, "dataset is events or feedback", ERROR,
                   column="dataset", value_set=["events", "feedback"]),
            expect(gxe.ExpectColumnValuesToBeInSet, "error_kind is a known kind", ERROR,
                   column="error_kind", value_set=[k.value for k in ErrorKind]),
            no_unmasked_pii(),
        ],
        pii_columns=text,
    )
    facts = Source(
        "select s.dataset, (select count(*) from quarantine q where q.dataset = s.dataset)"
        " / greatest(s.input_rows, 1) as quarantine_share from summary s order by s.dataset",
        [at_most("quarantine_share", settings.quarantine_share, WARN, f"quarantined share <= {settings.quarantine_share}")],
        streamed=False,
    )
    return SuiteSpec("quarantine", {"rows": rows, "facts": facts})


RECONCILIATION_SQL = """
with written as (select 'events' as dataset, count(*) as n from events
                 union all select 'feedback', count(*) from feedback),
     dups as (select dataset, count(*) as n from duplicates group by dataset),
     quar as (select dataset, count(*) as n from quarantine group by dataset)
select s.dataset, s.input_rows as summary_input_rows, s.output_rows as summary_output_rows,
       s.duplicate_rows as summary_duplicate_rows, s.quarantine_rows as summary_quarantine_rows,
       coalesce(w.n, 0) as table_output_rows, coalesce(d.n, 0) as table_duplicate_rows,
       coalesce(q.n, 0) as table_quarantine_rows,
       s.outside_window_rows as summary_outside_window_rows,
       s.input_rows - coalesce(w.n, 0) - coalesce(d.n, 0) - coalesce(q.n, 0) - s.outside_window_rows as unreconciled_rows,
       s.lines_read, s.lines_accounted, s.bytes_read, s.input_bytes
from summary s left join written w using (dataset) left join dups d using (dataset) left join quar q using (dataset)
order by s.dataset
"""


def run_summary_suite() -> SuiteSpec:
    def same(measure: str) -> Expectation:
        return expect(gxe.ExpectColumnPairValuesToBeEqual, f"{measure} rows in tables = run summary", ERROR,
                      column_A=f"summary_{measure}_rows", column_B=f"table_{measure}_rows")

    facts = Source(
        RECONCILIATION_SQL,
        [
            *not_null("summary_input_rows"),
            between("unreconciled_rows", 0, 0, check="input = output + duplicates + quarantine + outside window"),
            same("output"), same("duplicate"), same("quarantine"),
            expect(gxe.ExpectColumnPairValuesToBeEqual, "lines read = lines of rows + blank, header and further lines",
                   ERROR, column_A="lines_read", column_B="lines_accounted"),
            expect(gxe.ExpectColumnPairValuesToBeEqual, "bytes read = bytes of the input files", ERROR,
                   column_A="bytes_read", column_B="input_bytes"),
        ],
        streamed=False,
    )
    return SuiteSpec("run_summary", {"facts": facts})


def matching(column: str, pattern: str, check: str) -> Expectation:
    return expect(gxe.ExpectColumnValuesToMatchRegex, check, ERROR, column=column, regex=pattern)


KEYED_HASH = "^[0-9a-f]{16}$"  # identifiers are known only by keyed hashes (docs/identity.md)
PERSON_ID = "^p_[0-9a-f]{16}$"


def identity_suites() -> list[SuiteSpec]:
    """The run's identity tables (its links, its map and conflicts snapshot): identifiers known only by keyed
    hashes, and a map and conflicts that agree with the graph's rules (docs/identity.md)."""
    identity_map = SuiteSpec("identity_map", {
        "rows": Source(
            "select identifier_type, identifier_hash, person_id, first_seen, changed_on, run_id from identity_map",
            [*not_null("identifier_type", "identifier_hash", "person_id", "first_seen", "changed_on", "run_id"),
             matching("identifier_type", "^[a-z][a-z0-9_]*$", "identifier_type is a lower-case name"),
             matching("identifier_hash", KEYED_HASH, "identifier_hash is a keyed hash"),
             matching("person_id", PERSON_ID, "person_id is p_ + a keyed hash")]),
        "facts": Source(
            "select (select count(*) from (select identifier_type, identifier_hash from identity_map"
            "  group by all having count(*) > 1)) as identifiers_mapped_twice,"
            " (select count(distinct m.person_id) from identity_map m where not exists (select 1 from identity_map a"
            "  where a.identifier_type = 'customer_id' and a.person_id = m.person_id"
            "  and 'p_' || a.identifier_hash = m.person_id)) as persons_without_anchor",
            [at_most("identifiers_mapped_twice", 0, ERROR, "one person per identifier"),
             at_most("persons_without_anchor", 0, ERROR, "every person is anchored at one of its customer ids")],
            streamed=False),
    })
    identity_links = SuiteSpec("identity_links", {
        "rows": Source(
            "select identifier_type, identifier_hash, customer_hash, run_id from identity_links",
            [*not_null("identifier_type", "identifier_hash", "customer_hash", "run_id"),
             matching("identifier_hash", KEYED_HASH, "identifier_hash is a keyed hash"),
             matching("customer_hash", KEYED_HASH, "customer_hash is a keyed hash")]),
    })
    identity_conflicts = SuiteSpec("identity_conflicts", {
        "rows": Source(
            'select kind, identifier_hash, customers, "limit", run_id from identity_conflicts',
            [*not_null("kind", "customers", "limit", "run_id"),
             expect(gxe.ExpectColumnValuesToBeInSet, "kind is shared_identifier or person_cap", ERROR,
                    column="kind", value_set=["shared_identifier", "person_cap"]),
             matching("identifier_hash", KEYED_HASH, "identifier_hash is a keyed hash")]),
        "facts": Source(
            "select (select count(*) from identity_conflicts c join identity_map m using (identifier_type, identifier_hash)"
            "  where c.kind = 'shared_identifier') as shared_identifiers_linked,"
            " (select count(*) from identity_conflicts where (kind = 'shared_identifier' and not customers > \"limit\")"
            "  or (kind = 'person_cap' and not identifiers > \"limit\")) as conflicts_within_limit",
            [at_most("shared_identifiers_linked", 0, ERROR, "a shared identifier links nobody"),
             at_most("conflicts_within_limit", 0, ERROR, "every conflict is over its limit")],
            streamed=False),
    })
    return [identity_map, identity_links, identity_conflicts]


def build_suites(settings: QualitySettings, window: Window) -> list[SuiteSpec]:
    ids = SCANNED_IDS
    return [events_suite(settings, window, ids), feedback_suite(settings, window, ids), quarantine_suite(settings),
            *identity_suites(), run_summary_suite()]
