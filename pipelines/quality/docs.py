"""Great Expectations Data Docs under `OUT/_quality/data_docs/`, made to work offline.

GE's file context lives in `OUT/_quality/gx/` (suites, validation results of every check of this
output directory, so the Data Docs index lists the history). GE's pages load Bootstrap, jQuery and
bootstrap-table and bootstrap-datepicker from CDNs and a logo from GE's servers; `make_offline` points them at copies
vendored in `pipelines/quality/vendor/`, drops the rest, and a small stylesheet replaces the icons.
"""
from __future__ import annotations

import copy
import html
import re
from datetime import datetime
from importlib import resources
from os.path import relpath
from pathlib import Path

import great_expectations as gx
from great_expectations.core.run_identifier import RunIdentifier
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)

SITE = "local_site"
VENDORED = {  # CDN file name -> vendored file
    "bootstrap.min.css": "bootstrap.min.css",
    "bootstrap.min.js": "bootstrap.bundle.min.js",  # with popper
    "jquery-3.7.1.min.js": "jquery.min.js",
    "bootstrap-table.min.css": "bootstrap-table.min.css",
    "bootstrap-table.min.js": "bootstrap-table.min.js",
    "bootstrap-table-filter-control.min.css": "bootstrap-table-filter-control.min.css",
    "bootstrap-table-filter-control.min.js": "bootstrap-table-filter-control.min.js",
    "bootstrap-datepicker.min.css": "bootstrap-datepicker.min.css",
    "bootstrap-datepicker.min.js": "bootstrap-datepicker.min.js",
}
REMOTE_TAG = re.compile(r'<(script|link)\b[^>]*?(?:src|href)="(https?://[^"]+)"[^>]*>(?:\s*</script>)?')
REMOTE_LOGO = re.compile(r"https://great-expectations-web-assets[^\"')]*")
ICON_STYLES = """
.fas, .fa { font-family: inherit; font-style: normal; font-weight: bold; }
.fa-check-circle::before, .fa-check::before { content: "\\2713"; }
.fa-times::before, .fa-times-circle::before { content: "\\2717"; }
.fa-exclamation-triangle::before { content: "!"; }
"""


def docs_dir(quality_dir: Path) -> Path:
    return quality_dir / "data_docs"


def open_context(quality_dir: Path):
    """GE's file context in `quality_dir/gx`, progress bars off, one Data Docs site in `quality_dir/data_docs`."""
    quality_dir.mkdir(parents=True, exist_ok=True)
    context = gx.get_context(mode="file", project_root_dir=str(quality_dir.resolve()))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                          "base_directory": str(docs_dir(quality_dir).resolve())},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    for name in list(context.variables.data_docs_sites or {}):
        if name != SITE:
            context.delete_data_docs_site(name)
    if SITE in (context.variables.data_docs_sites or {}):
        context.update_data_docs_site(SITE, site)
    else:
        context.add_data_docs_site(SITE, site)
    context.variables.save()
    styles = Path(context.root_directory) / "plugins" / "custom_data_docs" / "styles"
    styles.mkdir(parents=True, exist_ok=True)
    (styles / "data_docs_custom_styles.css").write_text(ICON_STYLES, encoding="utf-8")
    return context


def escaped(value):
    """Every string inside `value` (lists and dicts walked) HTML-escaped. GE's pages insert observed and unexpected
    values as markup, so a table value such as `<img src=x onerror=...>` would run in the reader's browser."""
    if isinstance(value, str):
        return html.escape(value)
    if isinstance(value, (list, tuple)):
        return [escaped(v) for v in value]
    if isinstance(value, dict):
        return {k: escaped(v) for k, v in value.items()}
    return value


def for_docs(validation):
    """A copy of a suite's validation result whose values (observed, unexpected, errors) are safe as HTML."""
    validation = copy.deepcopy(validation)
    for result in validation.results:
        result.result = escaped(result.result)
        result.exception_info = escaped(result.exception_info)
    return validation


def publish(context, suites, validations: dict, run_id: str, checked_at: datetime) -> Path:
    """Save the suites, store one validation result per suite for this run (its values HTML-escaped), rebuild the
    site; its index.html. `run_id` names directories, so it is a safe run id (config.safe_run_id), never markup."""
    run = RunIdentifier(run_name=run_id, run_time=checked_at)
    for suite in suites:
        context.suites.add_or_update(suite)
        validation = for_docs(validations[suite.name])
        validation.meta["run_id"] = run
        validation.meta["validation_time"] = checked_at
        suite_id = ExpectationSuiteIdentifier(name=suite.name)
        key = ValidationResultIdentifier(suite_id, run, f"run_id={run_id}")
        context.validation_results_store.store_validation_results(validation, key, suite_id)
    context.build_data_docs(site_names=[SITE])
    site = docs_dir(Path(context.root_directory).parent)
    make_offline(site)
    return site / "index.html"


def make_offline(site: Path) -> None:
    """Vendor the CDN scripts and styles into `site/static/vendor` and point every page at them."""
    vendor = site / "static" / "vendor"
    vendor.mkdir(parents=True, exist_ok=True)
    source = resources.files("pipelines.quality") / "vendor"
    for name in {*VENDORED.values(), "LICENSES.txt"}:
        (vendor / name).write_bytes((source / name).read_bytes())
    logo = site / "static" / "images" / "logo-long-vector.svg"
    for page in site.rglob("*.html"):
        prefix = relpath(vendor, page.parent)

        def local(match: re.Match) -> str:
            tag, url = match.groups()
            name = VENDORED.get(url.rsplit("/", 1)[-1])
            if name is None:
                return ""
            if tag == "script":
                return f'<script src="{prefix}/{name}"></script>'
            return f'<link rel="stylesheet" href="{prefix}/{name}">'

        html = REMOTE_TAG.sub(local, page.read_text(encoding="utf-8"))
        html = REMOTE_LOGO.sub(relpath(logo, page.parent), html)
        page.write_text(html, encoding="utf-8")
