"""The source file: validation errors name the file, the key and the line; the CLI argument FILE.yaml=GLOB."""
from __future__ import annotations

import pytest

from pipelines.ingest.sources.spec import SourceError, load_source, parse_source, source_argument

GOOD = """\
dataset: events
paths: [data/*.csv]
format: {type: csv, delimiter: ";"}
fields:
  event_id: id
  occurred_at: {column: at, format: "%d/%m/%Y %H:%M"}
  customer_id: customer
  channel: {value: branch}
  touchpoint: step
"""


def test_a_valid_source_with_shorthand_columns():
    source = parse_source(GOOD, "sources/branch.yaml")
    assert source.name == "branch" and source.format.delimiter == ";"
    assert source.fields["event_id"].column == "id" and source.fields["channel"].value == "branch"
    assert source.columns() == ["id", "at", "customer", "step"]


@pytest.mark.parametrize(("change", "message"), [
    (("format: {type: csv, delimiter: \";\"}", "format: {type: csv, encoding: klingon}"),
     "s.yaml:3: format.encoding: unknown encoding 'klingon' (e.g. utf-8, utf-8-sig, gbk, gb18030, utf-16)"),
    (("  touchpoint: step", "  touchpoint: step\n  mood: happy"),
     "s.yaml:4: fields: not a field of events: mood"),
    (("  channel: {value: branch}", "  channel: {value: branch, column: ch}"),
     "s.yaml:8: fields.channel: give exactly one of column, value, template, hash, date, between (got ['column', 'value'])"),
    (("format: {type: csv, delimiter: \";\"}", "format: {type: tsv}"),
     "s.yaml:3: format: Input tag 'tsv' found using 'type' does not match any of the expected tags"),
    (("dataset: events", "dataset: visits"), "s.yaml:1: dataset: Input should be 'events' or 'feedback'"),
    (("  occurred_at: {column: at, format: \"%d/%m/%Y %H:%M\"}\n", ""), "s.yaml:1: (top level): no occurred_at in fields"),
])
def test_errors_name_the_file_the_key_and_the_line(change, message):
    with pytest.raises(SourceError) as error:
        parse_source(GOOD.replace(*change), "s.yaml")
    assert str(error.value).startswith(message)


def test_not_yaml_names_the_line():
    with pytest.raises(SourceError, match=r"^s.yaml:3: not valid YAML"):
        parse_source("dataset: events\nfields: [a\n", "s.yaml")


def test_the_glob_of_the_argument_replaces_the_paths(tmp_path):
    path = tmp_path / "branch.yaml"
    path.write_text(GOOD, encoding="utf-8")
    assert source_argument(str(path)).paths == ["data/*.csv"]
    assert source_argument(f"{path}=/exports/2026-*.csv").paths == ["/exports/2026-*.csv"]
    path.write_text(GOOD.replace("paths: [data/*.csv]\n", ""), encoding="utf-8")
    with pytest.raises(SourceError, match="no `paths` in the file and none given"):
        load_source(str(path))
    with pytest.raises(SourceError, match="cannot read source file"):
        load_source(str(tmp_path / "missing.yaml"))
