"""Render (and run) the DuckDB baseline of the benchmark: benchmarks/baseline.sql with its double-brace placeholders filled
from a playbook and the input files, so that the touchpoint map and the zh/en cues are never copied by hand.

    python -m benchmarks.baseline render -t 'in/touchpoints/*' --out OUT > baseline.sql
    python -m benchmarks.baseline run baseline.sql        # executes the script with DuckDB (what the benchmark times)
"""
from __future__ import annotations

import argparse
import csv
import glob
import gzip
import re
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

TEMPLATE = Path(__file__).with_name("baseline.sql")
FIELDS = ("event_id", "occurred_at", "customer_id", "visit_id", "channel", "touchpoint", "staff_id", "location_id",
          "duration_s", "wait_s", "text", "outcome", "attributes")
# error codes of the template's CASE (index 1..26) -> (error_kind, error_field)
ERRORS = [("unparseable_line", None)]
ERRORS += [("missing_required_field", f) for f in ("event_id", "occurred_at", "customer_id", "channel", "touchpoint")]
ERRORS += [("wrong_type", f) for f in ("event_id", "occurred_at", "customer_id", "channel", "touchpoint",
                                        "visit_id", "staff_id", "location_id", "outcome", "text")]
ERRORS += [("wrong_type", "duration_s"), ("out_of_range", "duration_s"), ("wrong_type", "wait_s"),
           ("out_of_range", "wait_s"), ("wrong_type", "attributes"), ("bad_timestamp", "occurred_at"),
           ("out_of_range", "duration_s"), ("out_of_range", "wait_s"), ("unknown_channel", "channel"),
           ("unknown_outcome", "outcome")]
assert len(ERRORS) == 26
# what Python's str.strip() removes
WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + \
    "\u2028\u2029\u202f\u205f\u3000"


def lit(value) -> str:
    """A SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, (int, float)):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def sql_list(values) -> str:
    return "[" + ", ".join(lit(v) for v in values) + "]"


def rx_escape(text: str) -> str:
    return re.sub(r"([\\.^$|?*+()\[\]{}])", r"\\\1", text)


def alternation(cues) -> str:
    """One RE2 alternation, longest cue first: at each position the longest cue wins (leftmost first)."""
    return "|".join(rx_escape(c) for c in sorted(set(cues), key=lambda c: (-len(c), c)))


def input_files(patterns: list[str]) -> list[str]:
    files = sorted({p for pattern in patterns for p in (glob.glob(pattern) or [pattern])})
    return [str(Path(f).resolve()) for f in files]


def is_csv(path: str) -> bool:
    return path.lower().removesuffix(".gz").removesuffix(".gzip").endswith(".csv")


def csv_header(path: str) -> list[str]:
    opener = gzip.open if path.lower().endswith((".gz", ".gzip")) else open
    with opener(path, "rt", encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])
    return [h.strip().lstrip("\ufeff") for h in header]


def _read_csv(files: list[str]) -> str:
    selects = []
    for path in files:
        header = csv_header(path)
        columns = "{" + ", ".join(f"{lit(h)}: 'VARCHAR'" for h in header) + "}"
        picked = ", ".join(f'"{f}" AS c_{f}' if f in header else f"NULL::VARCHAR AS c_{f}" for f in FIELDS)
        selects.append(
            f"SELECT {lit(path)} AS source_file, ordinality::BIGINT AS ordinality, {picked}\n"
            f"FROM read_csv({lit(path)}, header = true, auto_detect = false, columns = {columns}, delim = ',',\n"
            f"              quote = '\"', escape = '\"', store_rejects = true, ignore_errors = true) WITH ORDINALITY"
        )
    if not selects:  # no CSV input: an empty table of the same shape
        selects.append("SELECT NULL::VARCHAR AS source_file, NULL::BIGINT AS ordinality, "
                       + ", ".join(f"NULL::VARCHAR AS c_{f}" for f in FIELDS) + " LIMIT 0")
    return "\nUNION ALL\n".join(selects)


def _csv_rejects(any_csv: bool) -> str:
    """The CSV reader's rejected lines; without CSV input DuckDB creates no `reject_errors` table."""
    if not any_csv:
        return "SELECT NULL::VARCHAR AS source_file, NULL::BIGINT AS line_no LIMIT 0"
    return ("SELECT DISTINCT s.file_path AS source_file, e.line AS line_no\n"
            "FROM reject_errors e JOIN reject_scans s USING (scan_id, file_id)")


def _read_lines(files: list[str]) -> str:
    selects = []
    for path in files:
        csv_file = is_csv(path)
        selects.append(
            f"SELECT {lit(path)} AS source_file, {str(csv_file).lower()} AS is_csv, ordinality::BIGINT AS line_no, line\n"
            f"FROM read_csv({lit(path)}, columns = {{'line': 'VARCHAR'}}, header = false, auto_detect = false,\n"
            f"              delim = chr(1), quote = '', escape = '', max_line_size = 16777216) WITH ORDINALITY"
        )
    return "\nUNION ALL\n".join(selects)


def render(touchpoints: list[str], out: str, playbook: str = "bank_branch", timezone: str = "UTC") -> str:
    """The baseline SQL for these touchpoint files (JSONL / CSV, optionally gzip) writing under `out`."""
    from pipelines.ingest.contract import DIMENSIONS, MOT_STEPS, OUTCOMES, ABC_FACETS
    from pipelines.playbook import load_playbook
    from pipelines.tagging.lang import en_key, en_variants
    from pipelines.tagging.lexicon import CUE_FAMILIES, STOP_PHRASES, lexicon_entries

    pb = load_playbook(playbook)
    files = input_files(touchpoints)
    polarity_index = {"positive": 0, "negative": 1, "neutral": 2}

    # touchpoint map: step, ABC facet, default dimensions (neutral)
    rows = []
    for code, rule in sorted(pb.touchpoints.items()):
        codes = sorted(DIMENSIONS.index(d) * 3 + 2 for d in rule.dimensions)
        rows.append(f"({lit(code)}, {lit(rule.mot_step)}, {lit(rule.abc)}, {codes})")

    # cues: (lang, family, matching key, value); en keys are folded tokens, with the lexicon's inflections
    cue_values: set[tuple[str, str, str, int]] = set()
    for lang, cue, family, value in lexicon_entries(pb):
        if family not in CUE_FAMILIES:
            continue  # opinion words, negators, contrast and intensifiers: not used by the baseline
        code = {"mot_step": lambda v: v, "abc": lambda v: ABC_FACETS.index(v) + 1,
                "pzb": lambda v: DIMENSIONS.index(v[0]) * 3 + polarity_index[v[1]]}[family](value)
        key = en_key(cue) if lang == "en" else cue.strip()
        if not key:
            continue
        cue_values.add((lang, family, key, code))
        if lang == "en":
            cue_values.update((lang, family, variant, code) for variant in en_variants(key))
    stops = {"zh": [s for s in STOP_PHRASES["zh"]], "en": [en_key(s) for s in STOP_PHRASES["en"]]}
    hit_selects = []
    for family in CUE_FAMILIES:
        for lang in ("zh", "en"):
            cues = [c for l, f, c, _ in cue_values if l == lang and f == family] + stops[lang]
            pattern = "(" + alternation(cues) + ")" if lang == "zh" else r"\b(" + alternation(cues) + r")\b"
            if lang == "zh":
                hit_selects.append(
                    f"SELECT text, 'zh' AS lang, {lit(family)} AS family, cue, strpos(text, cue) AS pos\n"
                    f"    FROM (SELECT text, unnest(regexp_extract_all(text, {lit(pattern)}, 1)) AS cue FROM texts)")
            else:
                hit_selects.append(
                    f"SELECT text, 'en', {lit(family)}, cue, strpos(en, ' ' || cue || ' ')\n"
                    f"    FROM (SELECT text, en, unnest(regexp_extract_all(en, {lit(pattern)}, 1)) AS cue FROM texts)")
    cue_rows = ",\n    ".join(f"({lit(l)}, {lit(f)}, {lit(c)}, {v})" for l, f, c, v in sorted(cue_values))

    short = pb.thresholds.short_wait_s
    values = {
        "playbook_ref": pb.ref,
        "ws": lit(WHITESPACE),
        "read_lines": _read_lines(files),
        "json_paths": ", ".join(lit(f"$.{f}") for f in FIELDS),
        "read_csv": _read_csv([f for f in files if is_csv(f)]),   # JSONL files never go through the CSV reader
        "csv_rejects": _csv_rejects(any(is_csv(f) for f in files)),
        "csv_not_blank": " OR ".join(f"pystrip(c.c_{f}) IS NOT NULL" for f in FIELDS),
        "csv_raw": ", ".join(f"{lit(f)}, c_{f}" for f in FIELDS),
        "csv_fields": ", ".join(
            ("CASE WHEN pystrip(c_attributes) IS NULL THEN NULL WHEN json_valid(c_attributes) THEN c_attributes::JSON "
             "ELSE to_json(c_attributes) END")
            if f == "attributes" else f"csv_value(c_{f})" for f in FIELDS),
        "strip_columns": ", ".join(f"pystrip(s_{f}) AS p_{f}" for f in FIELDS),
        "field_columns": ", ".join(f"f[{i}] AS f_{f}" for i, f in enumerate(FIELDS, start=1)),
        "type_columns": ", ".join(f"json_type(f_{f}) AS ty_{f}, CASE WHEN json_type(f_{f}) = 'VARCHAR' THEN f_{f} ->> '$' END AS s_{f}"
                                  for f in FIELDS),
        "error_kinds": sql_list(k for k, _ in ERRORS),
        "error_fields": sql_list(f for _, f in ERRORS),
        "channels": ", ".join(lit(c) for c in sorted(pb.allowed_channels)),
        "outcomes": ", ".join(lit(o) for o in OUTCOMES),
        "timezone": timezone,
        "fallback_dt": datetime.now(ZoneInfo(timezone)).date().isoformat(),
        "long_wait_s": repr(float(pb.thresholds.long_wait_s)),
        "short_wait_s": repr(float(short)) if short is not None else "NULL",
        "touchpoint_rows": ",\n    ".join(rows),
        "cue_rows": cue_rows,
        "hit_selects": "\n    UNION ALL\n    ".join(hit_selects),
        "facets": sql_list(ABC_FACETS),
        "dimensions": sql_list(DIMENSIONS),
        "step_names": sql_list(MOT_STEPS[s][0] for s in sorted(MOT_STEPS)),
        "out": str(Path(out).resolve()),
    }
    text = TEMPLATE.read_text(encoding="utf-8")
    missing = set(re.findall(r"\{\{(\w+)\}\}", text)) - set(values)
    if missing:
        raise KeyError(f"template placeholders without a value: {sorted(missing)}")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


def run_sql(path: str, threads: int | None = None) -> None:
    import duckdb

    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    con.execute(Path(path).read_text(encoding="utf-8"))
    con.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.baseline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render", help="print the baseline SQL for the given inputs")
    r.add_argument("-t", "--touchpoints", action="append", required=True, help="file or glob (repeatable)")
    r.add_argument("--out", required=True, help="output directory of the baseline's Parquet tables")
    r.add_argument("--playbook", default="bank_branch")
    r.add_argument("--timezone", default="UTC")
    x = sub.add_parser("run", help="execute a rendered SQL file with DuckDB")
    x.add_argument("sql")
    x.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.command == "render":
        sys.stdout.write(render(args.touchpoints, args.out, args.playbook, args.timezone))
    else:
        run_sql(args.sql, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
