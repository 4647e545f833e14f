"""Data quality of a run's written tables with Great Expectations (see docs/quality.md).

`settings` (thresholds, defaults in thresholds.yaml), `suites` (one suite per dataset, as code),
`checkpoint` (validate, store `quality_results`), `docs` (offline Data Docs).
"""
