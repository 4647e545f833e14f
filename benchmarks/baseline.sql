-- DuckDB baseline for the motpipe benchmark: the core work of `motpipe run` on touchpoint events, as one SQL script.
--
-- This is a TEMPLATE. benchmarks/baseline.py fills the double-brace placeholders from the playbook (touchpoint map, zh/en
-- cues, channels, thresholds) and the input files, so no cue is copied by hand. What it does and does not do:
-- docs/performance.md. Steps: read every line (line numbers kept) -> parse JSONL / CSV -> validate in the order of
-- pipelines/validate.py (first failure wins) -> dedup by event_id (earliest by source file, line; exact vs
-- conflicting by content) -> tag MOT step, ABC facet and PZB dimensions -> Parquet partitioned by dt.
-- Playbook {{playbook_ref}}.

SET TimeZone = 'UTC';
SET preserve_insertion_order = false;

-- Python's str.strip() whitespace, and helpers that behave like pipelines/validate.py
CREATE MACRO ws() AS {{ws}};
CREATE MACRO pystrip(s) AS CASE WHEN ord(s[1]) BETWEEN 33 AND 126 AND ord(s[-1]) BETWEEN 33 AND 126 THEN s
                                 ELSE nullif(trim(s, ws()), '') END;   -- fast path: printable ASCII at both ends
CREATE MACRO present(ty, stripped) AS ty IS NOT NULL AND ty <> 'NULL' AND (ty <> 'VARCHAR' OR stripped IS NOT NULL);
CREATE MACRO has_value(ty) AS ty IS NOT NULL AND ty <> 'NULL';
CREATE MACRO csv_value(c) AS CASE WHEN pystrip(c) IS NULL THEN NULL ELSE to_json(c) END;
CREATE MACRO as_number(ty, f, stripped) AS CASE WHEN ty IN ('BIGINT', 'UBIGINT', 'DOUBLE') THEN (f ->> '$')::DOUBLE
                                                WHEN ty = 'VARCHAR' THEN try_cast(stripped AS DOUBLE) END;

-- 1. every physical line of every input file, with its 1-based line number
CREATE TEMP VIEW lines AS
{{read_lines}};

-- 2. one row per data line: the 13 contract fields as JSON values (SQL NULL = key absent)
CREATE TEMP VIEW jsonl_rows AS
WITH raw AS (
    SELECT source_file, line_no,
           rtrim(CASE WHEN line_no = 1 THEN ltrim(line, chr(65279)) ELSE line END, chr(13)) AS raw
    FROM lines
    WHERE NOT is_csv AND line IS NOT NULL AND trim(line, ' ' || chr(9) || chr(13) || chr(11) || chr(12)) <> ''
), parsed AS (
    SELECT *, try_cast(raw AS JSON) AS j FROM raw   -- NULL when the line is not JSON
), typed AS (
    SELECT *, json_type(j) = 'OBJECT' AS is_object FROM parsed
)
SELECT source_file, line_no, raw, NOT coalesce(is_object, false) AS unparseable,
       CASE WHEN is_object THEN json_extract(j, [{{json_paths}}]) END AS f
FROM typed;

-- CSV files: DuckDB's CSV reader; rows with the wrong number of cells (or not UTF-8) land in reject_errors with
-- their line number. Accepted rows get their physical line number by aligning them, in order, with the file's
-- non-blank lines that were not rejected (a quoted cell spanning two lines is not supported).
CREATE TEMP TABLE csv_cells AS
{{read_csv}};

CREATE TEMP TABLE csv_rejects AS
-- all read_csv calls of one statement share one scan_id: a file is (scan_id, file_id), never scan_id alone
{{csv_rejects}};

CREATE TEMP VIEW csv_rows AS
WITH aligned AS (
    SELECT l.source_file, l.line_no, l.line,
           row_number() OVER (PARTITION BY l.source_file ORDER BY l.line_no) AS ordinality
    FROM lines l ANTI JOIN csv_rejects r USING (source_file, line_no)
    WHERE l.is_csv AND l.line_no > 1 AND l.line IS NOT NULL AND rtrim(l.line, chr(13)) <> ''
), good AS (
    SELECT a.source_file, a.line_no, false AS unparseable, c.*
    FROM csv_cells c JOIN aligned a USING (source_file, ordinality)
    WHERE {{csv_not_blank}}   -- a row of blank cells is not a row
)
SELECT source_file, line_no, json_object({{csv_raw}})::VARCHAR AS raw, unparseable, [{{csv_fields}}] AS f FROM good
UNION ALL
SELECT l.source_file, l.line_no, to_json(rtrim(l.line, chr(13)))::VARCHAR, true, NULL
FROM lines l SEMI JOIN csv_rejects r USING (source_file, line_no)
WHERE l.is_csv;

-- 3. validation: the first failed check is the row's reason (codes index {{error_kinds}} / {{error_fields}})
CREATE TEMP TABLE checked AS
WITH fields AS (
    SELECT source_file, line_no, raw, unparseable, {{field_columns}}
    FROM (SELECT * FROM jsonl_rows UNION ALL SELECT * FROM csv_rows)
), typed AS (
    SELECT *, {{type_columns}} FROM fields
), stripped AS (
    SELECT *, {{strip_columns}} FROM typed
), parsed AS (
    SELECT *,
           as_number(ty_duration_s, f_duration_s, p_duration_s) AS n_duration_s,
           as_number(ty_wait_s, f_wait_s, p_wait_s) AS n_wait_s,
           CASE WHEN regexp_full_match(p_occurred_at, '(?s)[0-9]{4}-.{5,}') THEN try_cast(p_occurred_at AS TIMESTAMPTZ) END AS ts
    FROM stripped
), judged AS (
    SELECT *,
        CASE
            WHEN unparseable THEN 1
            WHEN NOT present(ty_event_id, p_event_id) THEN 2
            WHEN NOT present(ty_occurred_at, p_occurred_at) THEN 3
            WHEN NOT present(ty_customer_id, p_customer_id) THEN 4
            WHEN NOT present(ty_channel, p_channel) THEN 5
            WHEN NOT present(ty_touchpoint, p_touchpoint) THEN 6
            WHEN ty_event_id <> 'VARCHAR' THEN 7
            WHEN ty_occurred_at <> 'VARCHAR' THEN 8
            WHEN ty_customer_id <> 'VARCHAR' THEN 9
            WHEN ty_channel <> 'VARCHAR' THEN 10
            WHEN ty_touchpoint <> 'VARCHAR' THEN 11
            WHEN has_value(ty_visit_id) AND ty_visit_id <> 'VARCHAR' THEN 12
            WHEN has_value(ty_staff_id) AND ty_staff_id <> 'VARCHAR' THEN 13
            WHEN has_value(ty_location_id) AND ty_location_id <> 'VARCHAR' THEN 14
            WHEN has_value(ty_outcome) AND ty_outcome <> 'VARCHAR' THEN 15
            WHEN has_value(ty_text) AND ty_text <> 'VARCHAR' THEN 16
            WHEN present(ty_duration_s, p_duration_s) AND n_duration_s IS NULL THEN 17
            WHEN present(ty_duration_s, p_duration_s) AND NOT isfinite(n_duration_s) THEN 18
            WHEN present(ty_wait_s, p_wait_s) AND n_wait_s IS NULL THEN 19
            WHEN present(ty_wait_s, p_wait_s) AND NOT isfinite(n_wait_s) THEN 20
            WHEN has_value(ty_attributes) AND ty_attributes <> 'OBJECT' THEN 21
            WHEN ts IS NULL THEN 22
            WHEN n_duration_s < 0 THEN 23
            WHEN n_wait_s < 0 THEN 24
            WHEN lower(p_channel) NOT IN ({{channels}}) THEN 25
            WHEN p_outcome IS NOT NULL AND lower(p_outcome) NOT IN ({{outcomes}}) THEN 26
        END AS err
    FROM parsed
)
SELECT source_file, line_no, err,
       CASE WHEN err IS NOT NULL THEN raw END AS raw,
       p_event_id AS event_id,
       ts AS occurred_at,
       p_customer_id AS customer_id,
       p_visit_id AS visit_id,
       lower(p_channel) AS channel,
       p_touchpoint AS touchpoint,
       p_staff_id AS staff_id,
       p_location_id AS location_id,
       n_duration_s AS duration_s,
       n_wait_s AS wait_s,
       CASE WHEN p_text IS NOT NULL THEN s_text END AS text,
       lower(p_outcome) AS outcome,
       CASE WHEN err IS NULL AND ty_attributes = 'OBJECT'   -- canonical JSON: keys sorted, as json.dumps(sort_keys=True)
            THEN to_json(map_from_entries(list_sort(map_entries(f_attributes::MAP(VARCHAR, JSON))))) END AS attributes
FROM judged;

-- 4. dedup by event_id: the earliest row by (source_file, line_no) wins; a later row with the same validated
--    content is an exact duplicate, with other content a conflicting duplicate (quarantined)
CREATE TEMP TABLE ranked AS
SELECT * EXCLUDE (err, raw),
       hash(event_id, occurred_at, customer_id, visit_id, channel, touchpoint, staff_id, location_id, duration_s,
            wait_s, text, outcome, attributes) AS content,
       row_number() OVER w AS rn,
       first_value(hash(event_id, occurred_at, customer_id, visit_id, channel, touchpoint, staff_id, location_id,
                        duration_s, wait_s, text, outcome, attributes)) OVER w AS kept_content,
       first_value(source_file) OVER w AS kept_source_file,
       first_value(line_no) OVER w AS kept_line_no,
       strftime(timezone('{{timezone}}', occurred_at), '%Y-%m-%d') AS dt,
       CASE WHEN wait_s > {{long_wait_s}} THEN 'long' WHEN wait_s <= {{short_wait_s}} THEN 'short' END AS wait_bucket
FROM checked
WHERE err IS NULL
WINDOW w AS (PARTITION BY event_id ORDER BY source_file, line_no);

-- 5. tagging. Tags depend only on (touchpoint, text, wait bucket): tag each distinct key once, then join back.
CREATE TEMP TABLE touchpoint_map (code VARCHAR, mot_step INTEGER, abc_facet VARCHAR, codes INTEGER[]);
INSERT INTO touchpoint_map VALUES {{touchpoint_rows}};
-- cue -> value: pzb value = dimension index * 3 + polarity index (positive 0, negative 1, neutral 2)
CREATE TEMP TABLE cue_map (lang VARCHAR, family VARCHAR, cue VARCHAR, value INTEGER);
INSERT INTO cue_map VALUES {{cue_rows}};

CREATE TEMP TABLE tag_keys AS
SELECT DISTINCT touchpoint, text, wait_bucket FROM ranked WHERE rn = 1;

CREATE TEMP TABLE text_tags AS
WITH texts AS (
    SELECT DISTINCT text,
           ' ' || array_to_string(regexp_extract_all(lower(text), '[a-z0-9]+(?:''[a-z]+)*'), ' ') || ' ' AS en
    FROM tag_keys WHERE text IS NOT NULL
), hits AS (
    -- one alternation per family and language, longest cue first (so at each position the longest cue wins),
    -- stop phrases included so that they block the cues they overlap
    {{hit_selects}}
), valued AS (
    SELECT h.text, h.family, h.cue, h.pos, m.value, length(h.cue) AS size
    FROM hits h JOIN cue_map m ON m.lang = h.lang AND m.family = h.family AND m.cue = h.cue
), steps AS (   -- score of a step = total length of its distinct cues; ties: earliest cue, then lower step
    SELECT text, arg_max(value, (score, -pos, -value)) AS mot_step
    FROM (SELECT text, value, sum(size) AS score, min(pos) AS pos
          FROM (SELECT DISTINCT text, value, cue, size, pos FROM valued WHERE family = 'mot_step') GROUP BY text, value)
    GROUP BY text
), facets AS (
    SELECT text, arg_min(value, pos) AS abc FROM valued WHERE family = 'abc' GROUP BY text
), pzb AS (
    SELECT text, list(DISTINCT value) AS codes FROM valued WHERE family = 'pzb' GROUP BY text
)
SELECT t.text, s.mot_step, f.abc, coalesce(p.codes, []) AS codes
FROM texts t LEFT JOIN steps s USING (text) LEFT JOIN facets f USING (text) LEFT JOIN pzb p USING (text);

CREATE TEMP TABLE key_tags AS
WITH merged AS (
    SELECT k.touchpoint, k.text, k.wait_bucket,
           coalesce(tp.mot_step, tt.mot_step) AS mot_step,
           CASE WHEN tp.mot_step IS NOT NULL THEN 'touchpoint' WHEN tt.mot_step IS NOT NULL THEN 'text' END AS mot_step_source,
           coalesce(tp.abc_facet, ({{facets}})[tt.abc]) AS abc_facet,
           list_distinct(list_concat(coalesce(tp.codes, []),
                                     CASE k.wait_bucket WHEN 'long' THEN [4] WHEN 'short' THEN [3] ELSE [] END,
                                     coalesce(tt.codes, []))) AS codes
    FROM tag_keys k
    LEFT JOIN touchpoint_map tp ON tp.code = k.touchpoint
    LEFT JOIN text_tags tt ON tt.text = k.text
), kept AS (   -- a neutral mention is dropped when the same dimension has a polar tag
    SELECT *, list_sort(list_filter(codes, lambda c: c % 3 <> 2
               OR NOT list_contains(list_transform(list_filter(codes, lambda x: x % 3 <> 2), lambda x: x // 3), c // 3))) AS final
    FROM merged
)
SELECT touchpoint, text, wait_bucket, mot_step, mot_step_source, abc_facet,
       list_transform(final, lambda c: {'dimension': ({{dimensions}})[c // 3 + 1], 'polarity': (['positive', 'negative', 'neutral'])[c % 3 + 1]}) AS pzb_tags,
       CASE WHEN len(list_filter(final, lambda c: c % 3 = 1)) > 0 THEN 'negative'
            WHEN len(list_filter(final, lambda c: c % 3 = 0)) > 0 THEN 'positive' ELSE 'neutral' END AS polarity
FROM kept;

-- 6. write Hive-partitioned Parquet
COPY (
    SELECT r.event_id, r.occurred_at, r.customer_id, r.visit_id, r.channel, r.touchpoint, r.staff_id, r.location_id,
           r.wait_s, r.duration_s, r.text, r.outcome, r.attributes,
           k.mot_step::TINYINT AS mot_step, ({{step_names}})[k.mot_step] AS mot_step_name, k.mot_step_source,
           k.abc_facet, k.pzb_tags, k.polarity, '{{playbook_ref}}' AS playbook, r.source_file, r.line_no, r.dt
    FROM ranked r
    JOIN key_tags k ON k.touchpoint IS NOT DISTINCT FROM r.touchpoint AND k.text IS NOT DISTINCT FROM r.text
                   AND k.wait_bucket IS NOT DISTINCT FROM r.wait_bucket
    WHERE r.rn = 1
    ORDER BY r.occurred_at, r.event_id
) TO '{{out}}/events' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt), OVERWRITE_OR_IGNORE);

COPY (
    SELECT 'events' AS dataset, event_id AS record_id,
           ({{error_kinds}})[err] AS error_kind, ({{error_fields}})[err] AS error_field, raw AS raw_record,
           source_file, line_no,
           coalesce(strftime(timezone('{{timezone}}', occurred_at), '%Y-%m-%d'), '{{fallback_dt}}') AS dt
    FROM checked WHERE err IS NOT NULL
    UNION ALL
    SELECT 'events', event_id, 'conflicting_duplicate', 'event_id',
           to_json({event_id: event_id, occurred_at: occurred_at, customer_id: customer_id, visit_id: visit_id,
                    channel: channel, touchpoint: touchpoint, staff_id: staff_id, location_id: location_id,
                    duration_s: duration_s, wait_s: wait_s, text: text, outcome: outcome, attributes: attributes::JSON})::VARCHAR,
           source_file, line_no, dt
    FROM ranked WHERE rn > 1 AND content <> kept_content
) TO '{{out}}/quarantine' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt), OVERWRITE_OR_IGNORE);

COPY (
    SELECT 'events' AS dataset, event_id AS record_id, kept_source_file, kept_line_no, source_file, line_no, dt
    FROM ranked WHERE rn > 1 AND content = kept_content
) TO '{{out}}/duplicates' (FORMAT parquet, COMPRESSION zstd, PARTITION_BY (dt), OVERWRITE_OR_IGNORE);
