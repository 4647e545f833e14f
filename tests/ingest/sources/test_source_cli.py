"""`motpipe sources check` and `motpipe sources draft`."""
from __future__ import annotations

from pathlib import Path

import yaml
from typer.testing import CliRunner

from pipelines.cli import app
from pipelines.ingest.sources.draft import describe_columns, sniff_encoding, time_format
from pipelines.ingest.sources.native import read_native
from pipelines.ingest.sources.spec import CsvFormat, load_source

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources"


def invoke(*args: str):
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})


def flat(output: str) -> str:
    return " ".join(output.split())


def test_check_prints_the_first_rows_and_every_error_kind_and_writes_nothing(tmp_path):
    result = invoke("sources", "check", f"{FIXTURES / 'calls.yaml'}={FIXTURES / 'calls.tsv'}", "--rows", "2")
    assert result.exit_code == 1, result.output  # some rows were quarantined
    text = flat(result.output)
    assert "K1-ivr" in text and "K1-queue" in text and "K1-answer" not in text  # two rows
    assert "rows in 5; rows with moments 3 -> 9 events; rows without moments 0" in text
    assert "bad_timestamp │ 1 │ calls.tsv:5 │ call_date,ivr_at" in text
    assert "unparseable_line │ 1 │ calls.tsv:6" in text


def test_check_of_a_clean_source_exits_0():
    result = invoke("sources", "check", f"{FIXTURES / 'permits.yaml'}={FIXTURES / 'permits.xes'}")
    assert result.exit_code == 0, result.output
    assert "no row quarantined" in result.output


def test_check_of_an_invalid_source_file_exits_2_naming_the_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((FIXTURES / "calls.yaml").read_text(encoding="utf-8").replace('delimiter: "\\t"', "encoding: klingon"),
                   encoding="utf-8")
    result = invoke("sources", "check", str(bad))
    assert result.exit_code == 2
    assert "bad.yaml:6: format.encoding: unknown encoding 'klingon'" in flat(result.output)


def test_sniffing_encodings_and_timestamp_formats():
    assert sniff_encoding("流水号".encode("gbk")) == "gb18030"
    assert sniff_encoding("\ufeffa,b".encode("utf-8")) == "utf-8-sig"
    assert sniff_encoding("a,b".encode("utf-16")) == "utf-16"
    assert sniff_encoding(b"a,b") == "utf-8"
    assert time_format(["29/2/2016 01:16", "5/3/2016 12:00"]) == "%d/%m/%Y %H:%M"
    assert time_format(["2011-10-11 13:45:40.276000+02:00"]) == "iso"
    assert time_format(["1790000000000"]) == "epoch_ms" and time_format(["1790000000"]) == "epoch_s"
    assert time_format(["soon"]) is None


def test_describe_columns_of_a_gbk_export():
    native = read_native(str(FIXTURES / "branch_gbk.csv"), CsvFormat(type="csv", encoding="gb18030"))
    kinds = {c.name: (c.kind, c.time_format) for c in describe_columns(native.table, ["", "NA"])}
    assert kinds == {"流水号": ("text", None), "客户号": ("text", None), "办理时间": ("timestamp", "%Y/%m/%d %H:%M"),
                     "渠道": ("text", None), "业务类型": ("text", None), "柜员": ("text", None),
                     "等候分钟": ("number", None), "备注": ("text", None)}


def test_draft_writes_a_source_file_that_loads_and_reads_the_export(tmp_path):
    export = tmp_path / "incidents.csv"
    export.write_text("number,incident_state,caller_id,contact_type,sys_updated_at,assigned_to\n"
                      "INC1,New,Caller 1,Phone,29/2/2016 01:23,?\nINC1,Active,Caller 1,Phone,1/3/2016 09:00,Resolver 4\n"
                      "INC2,New,?,Email,2/3/2016 10:00,?\n", encoding="utf-8")
    out = tmp_path / "incidents.source.yaml"
    result = invoke("sources", "draft", str(export), "--out", str(out))
    assert result.exit_code == 0, result.output
    draft = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert draft["format"] == {"type": "csv"} and draft["null_values"] == ["", "?"]
    assert draft["fields"] == {
        "occurred_at": {"column": "sys_updated_at", "format": "%d/%m/%Y %H:%M"}, "customer_id": "caller_id",
        "visit_id": "number", "channel": {"column": "contact_type", "map": {"Phone": "TODO", "Email": "TODO"}},
        "touchpoint": {"column": "incident_state", "slug": True}, "staff_id": "assigned_to",
        "event_id": {"hash": ["number", "incident_state", "caller_id"]}}
    assert "#   sys_updated_at: timestamp %d/%m/%Y %H:%M; '29/2/2016 01:23', '1/3/2016 09:00', '2/3/2016 10:00'" \
        in out.read_text(encoding="utf-8")
    finished = out.read_text(encoding="utf-8").replace("Phone: TODO", "Phone: phone").replace("Email: TODO", "Email: email")
    out.write_text(finished, encoding="utf-8")
    assert load_source(str(out)).fields["channel"].map == {"Phone": "phone", "Email": "email"}
    result = invoke("sources", "check", str(out))
    assert result.exit_code == 1 and "missing_required_field │ 1 │ incidents.csv:4 │ customer_id" in flat(result.output)
