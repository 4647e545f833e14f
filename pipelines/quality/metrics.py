"""The metrics Great Expectations asks for, computed by DuckDB SQL over a source query.

GE decides an expectation from metrics: `Expectation.get_validation_dependencies()` names them
(`table.row_count`, `column_values.between.unexpected_count`, `column.max`, ...) and
`Expectation.metrics_validate(metrics)` evaluates them, GE's own success rule and result format.
GE's execution engines would compute those metrics from the rows in pandas (a second pass over every
row, in Python objects); here one aggregate query per source computes every count, min and max its
expectations need, and the unexpected values (the first `partial_unexpected_count`) are fetched only
for the expectations that found some.

    >>> metrics = compute_metrics(con, "select * from events", expectations)   # doctest: +SKIP
    >>> [e.metrics_validate(metrics) for e in expectations]                    # doctest: +SKIP

A column missing from the query can be given by its non-null values (`sparse`): every other row is null
(the checkpoint's `unmasked_pii` flags, found in Python on PII candidates only).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime

import duckdb
from great_expectations.expectations.expectation import Expectation
from great_expectations.validator.metric_configuration import MetricConfiguration

UNEXPECTED_COUNT, UNEXPECTED_VALUES = ".unexpected_count", ".unexpected_values"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(value) -> str:
    """A SQL literal of a threshold or set member."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"no SQL literal for {value!r}")
        return repr(value)
    if isinstance(value, datetime):
        return f"timestamptz '{value.isoformat()}'" if value.tzinfo else f"timestamp '{value.isoformat()}'"
    if isinstance(value, date):
        return f"date '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def domain_filter(domain: dict) -> str:
    """The rows a metric's domain covers (column pairs: GE's `ignore_row_if`)."""
    if "column_A" not in domain:
        return "true"
    a, b = quote(domain["column_A"]), quote(domain["column_B"])
    rule = domain.get("ignore_row_if") or "both_values_are_missing"
    if rule == "both_values_are_missing":
        return f"not ({a} is null and {b} is null)"
    if rule == "either_value_is_missing":
        return f"({a} is not null and {b} is not null)"
    if rule == "neither":
        return "true"
    raise ValueError(f"ignore_row_if {rule!r} is not supported")


def unexpected(map_metric: str, domain: dict, value: dict) -> str:
    """SQL condition of a row that the map metric counts as unexpected (null values are never unexpected
    except for the null / non-null metrics themselves, as in GE)."""
    if map_metric == "column_pair_values.equal":
        return f"{domain_filter(domain)} and {quote(domain['column_A'])} is distinct from {quote(domain['column_B'])}"
    column = quote(domain["column"])
    if map_metric == "column_values.nonnull":
        return f"{column} is null"
    if map_metric == "column_values.null":
        return f"{column} is not null"
    if map_metric == "column_values.in_set":
        members = ", ".join(literal(v) for v in value["value_set"])
        return f"{column} is not null and {column} not in ({members})" if members else f"{column} is not null"
    if map_metric == "column_values.match_regex":
        return f"{column} is not null and not regexp_matches({column}, {literal(value['regex'])})"
    if map_metric == "column_values.between":
        low, high = value.get("min_value"), value.get("max_value")
        if low is None and high is None:
            raise ValueError("column_values.between needs min_value or max_value")
        inside = [f"{column} {'>' if value.get('strict_min') else '>='} {literal(low)}"] if low is not None else []
        inside += [f"{column} {'<' if value.get('strict_max') else '<='} {literal(high)}"] if high is not None else []
        return f"{column} is not null and not ({' and '.join(inside)})"
    raise ValueError(f"metric {map_metric!r} is not computed in SQL")


def aggregate(config: MetricConfiguration) -> str:
    """The SQL aggregate of a count, min or max metric."""
    name, domain, value = config.metric_name, dict(config.metric_domain_kwargs), dict(config.metric_value_kwargs or {})
    if name == "table.row_count":
        return "count(*)"
    if name == "column.max":
        return f"max({quote(domain['column'])})"
    if name == "column.min":
        return f"min({quote(domain['column'])})"
    if name == "column_pair_values.equal.filtered_row_count":
        return f"count(*) filter (where {domain_filter(domain)})"
    if name.endswith(UNEXPECTED_COUNT):
        return f"count(*) filter (where {unexpected(name.removesuffix(UNEXPECTED_COUNT), domain, value)})"
    raise ValueError(f"metric {name!r} is not computed in SQL")


def first_unexpected(config: MetricConfiguration) -> tuple[str, str, int]:
    """(select list, condition, limit) of an `unexpected_values` metric."""
    domain, value = dict(config.metric_domain_kwargs), dict(config.metric_value_kwargs or {})
    map_metric = config.metric_name.removesuffix(UNEXPECTED_VALUES)
    limit = int((value.get("result_format") or {}).get("partial_unexpected_count", 20))
    columns = (f"{quote(domain['column_A'])}, {quote(domain['column_B'])}" if "column_A" in domain
               else quote(domain["column"]))
    return columns, unexpected(map_metric, domain, value), limit


def configurations(expectations: Iterable[Expectation]) -> dict[tuple, MetricConfiguration]:
    """Every metric the expectations depend on, once each (by GE's metric id)."""
    found: dict[tuple, MetricConfiguration] = {}
    for expectation in expectations:
        for config in expectation.get_validation_dependencies().get_metric_configurations():
            found.setdefault(config.id, config)
    return found


def sparse_metric(config: MetricConfiguration, values: list, row_count: int):
    """A null / non-null metric of a column known by its non-null values (all other rows null)."""
    name = config.metric_name
    if name == "column_values.null.unexpected_count":
        return len(values)
    if name == "column_values.nonnull.unexpected_count":
        return row_count - len(values)
    if name == "column_values.null.unexpected_values":
        return values[: first_unexpected(config)[2]]
    raise ValueError(f"metric {name!r} of a sparse column is not supported")


def compute_metrics(con: duckdb.DuckDBPyConnection, sql: str, expectations: Iterable[Expectation],
                    sparse: dict[str, list] | None = None) -> dict[tuple, object]:
    """GE metric id -> value for the expectations on the rows of `sql`: one aggregate query, then one small
    query per `unexpected_values` metric whose count is not zero."""
    sparse = sparse or {}
    configs = configurations(expectations)
    in_sparse = {i: c for i, c in configs.items() if dict(c.metric_domain_kwargs).get("column") in sparse}
    values_ids = [i for i, c in configs.items() if i not in in_sparse and c.metric_name.endswith(UNEXPECTED_VALUES)]
    aggregate_ids = [i for i in configs if i not in in_sparse and i not in values_ids]
    row_count = MetricConfiguration("table.row_count", {}).id
    wanted = list(dict.fromkeys([row_count, *aggregate_ids]))
    configs.setdefault(row_count, MetricConfiguration("table.row_count", {}))
    selects = ", ".join(aggregate(configs[i]) for i in wanted)
    metrics = dict(zip(wanted, con.execute(f"select {selects} from ({sql}) as source").fetchone()))
    for metric_id in values_ids:
        config = configs[metric_id]
        count_id = MetricConfiguration(config.metric_name.removesuffix(UNEXPECTED_VALUES) + UNEXPECTED_COUNT,
                                       config.metric_domain_kwargs, _without_result_format(config)).id
        if not metrics.get(count_id):
            metrics[metric_id] = []
            continue
        columns, condition, limit = first_unexpected(config)
        rows = con.execute(f"select {columns} from ({sql}) as source where {condition} limit {limit}").fetchall()
        metrics[metric_id] = [row if len(row) > 1 else row[0] for row in rows]
    for metric_id, config in in_sparse.items():
        metrics[metric_id] = sparse_metric(config, sparse[dict(config.metric_domain_kwargs)["column"]],
                                           metrics[row_count])
    return metrics


def _without_result_format(config: MetricConfiguration) -> dict:
    return {k: v for k, v in dict(config.metric_value_kwargs or {}).items() if k != "result_format"}
