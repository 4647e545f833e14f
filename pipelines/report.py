"""The analyst report: one static, self-contained HTML file with Vega-Lite charts (altair) over the journey views.

The vega, vega-lite and vega-embed JavaScript is embedded inline (from `vl-convert-python`'s bundle, the same one
altair's `save(..., inline=True)` uses), so the file opens offline and needs no CDN. Charts render as SVG.
Every chart sits in a `<div class="chart" id="chart-...">`; once drawn, the div gets `data-rendered="true"`.
"""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from typing import Optional

import altair as alt
import duckdb
import pandas as pd
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.analysis.drivers import OUTCOMES
from pipelines.ingest.contract import MOT_STEPS
from pipelines.views import DIMENSIONS as DIMENSION_ORDER, SETTINGS_TABLE, connect

AGGREGATORS = {"mean_score": "mean", "peak_end_score": "peak-end", "min_score": "minimum", "last_score": "last moment"}
QUADRANT_COLORS = {"concentrate here": "#d62728", "keep up the good work": "#2ca02c",
                   "low priority": "#7f7f7f", "possible overkill": "#ff7f0e"}
CHARTS = ("satisfaction", "channel_paths", "funnel", "servqual", "ipa", "drivers", "attribution", "cases", "scorecard", "quality")
ATTRIBUTION_MODELS = {"first_moment": "first moment", "last_moment": "last moment", "linear": "linear",
                      "u_shaped": "U-shaped", "time_decay": "time decay"}
IPA_IMPORTANCE = {"drivers": "share of csat's R², key drivers", "correlation": "correlation with csat", "weights": "weight"}
CASE_AGES = ("< 1 day", "1-3 days", "3-7 days", ">= 7 days")


def _df(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    return con.sql(sql).df()


def _empty(message: str) -> alt.Chart:
    """A chart that says there is nothing to show (still an SVG, so the page layout stays)."""
    return alt.Chart(pd.DataFrame({"text": [message]})).mark_text(size=14, color="#666").encode(
        text="text:N").properties(width=500, height=80)


def satisfaction_chart(con) -> alt.TopLevelMixin:
    # aggregated in DuckDB: one row per aggregator and csat value (null csat = journeys without feedback)
    unpivot = " union all ".join(
        f"select '{label}' as aggregator, {column} as score, csat from journey_satisfaction"
        for column, label in AGGREGATORS.items())
    long = _df(con, f"select aggregator, cast(round(csat) as integer) as csat, sum(score) as total, count(*) as journeys "
                    f"from ({unpivot}) group by all")
    if long.empty:
        return _empty("no journeys")
    order = list(AGGREGATORS.values())
    overall = long.groupby("aggregator", as_index=False)[["total", "journeys"]].sum()
    overall["score"] = overall["total"] / overall["journeys"]
    color = alt.Color("aggregator:N", sort=order, legend=alt.Legend(title="aggregator"))
    averages = alt.Chart(overall).mark_bar().encode(
        x=alt.X("aggregator:N", sort=order, title=None, axis=alt.Axis(labelAngle=0)),
        y=alt.Y("score:Q", title="average journey score (-1..+1)"),
        color=color,
        tooltip=["aggregator:N", alt.Tooltip("score:Q", format=".3f"), "journeys:Q"],
    ).properties(title="average over all journeys", width=300, height=260)
    rated = long.dropna(subset=["csat"]).copy()
    if rated.empty:
        return averages
    rated["score"] = rated["total"] / rated["journeys"]
    by_csat = alt.Chart(rated).mark_line(point=True).encode(
        x=alt.X("csat:O", title="csat of the journey's feedback (rounded mean)"),
        y=alt.Y("score:Q", title="average journey score"),
        color=color,
        tooltip=["aggregator:N", "csat:O", alt.Tooltip("score:Q", format=".3f"), "journeys:Q"],
    ).properties(title="by csat (journeys with feedback)", width=380, height=260)
    return alt.hconcat(averages, by_csat)


def channel_paths_chart(con, top: int = 12) -> alt.TopLevelMixin:
    """The most common channel sequences of person journeys: bars of journeys, coloured by the mean peak-end score."""
    paths = _df(con, f"select channel_path, journeys, journey_share, persons, avg_channel_switches, avg_peak_end_score, "
                     f"avg_csat from channel_paths order by journeys desc, channel_path limit {int(top)}")
    if paths.empty:
        return _empty("no person journeys")
    return alt.Chart(paths).mark_bar().encode(
        y=alt.Y("channel_path:N", sort=list(paths["channel_path"]), title="channels of the journey, in order"),
        x=alt.X("journeys:Q", title="person journeys"),
        color=alt.Color("avg_peak_end_score:Q", scale=alt.Scale(scheme="redblue", domain=[-1, 1]),
                        title="mean peak-end score"),
        tooltip=["channel_path:N", "journeys:Q", alt.Tooltip("journey_share:Q", format=".1%"), "persons:Q",
                 alt.Tooltip("avg_channel_switches:Q", format=".2f"), alt.Tooltip("avg_peak_end_score:Q", format=".2f"),
                 alt.Tooltip("avg_csat:Q", format=".2f")],
    ).properties(width=760, height=max(120, 22 * len(paths)))


def funnel_chart(con) -> alt.TopLevelMixin:
    funnel = _df(con, "select * from mot_funnel order by mot_step")
    if funnel.empty or funnel["journeys_reached"].sum() == 0:
        return _empty("no journey reached a MOT step")
    funnel["label"] = funnel["mot_step"].astype(str) + " " + funnel["mot_step_name"]
    funnel["text"] = funnel.apply(lambda r: f"{r.journeys_reached:,}  (-{r.drop_off_share:.0%})", axis=1)
    base = alt.Chart(funnel).encode(y=alt.Y("label:N", sort=list(funnel["label"]), title="MOT step"))
    bars = base.mark_bar(color="#4c78a8").encode(
        x=alt.X("journeys_reached:Q", title="journeys that reached steps 1..n"),
        tooltip=["label:N", "journeys_with_step:Q", "journeys_reached:Q",
                 alt.Tooltip("conversion_from_previous:Q", format=".1%"), "drop_off:Q",
                 alt.Tooltip("drop_off_share:Q", format=".1%")])
    text = base.mark_text(align="left", dx=4).encode(x="journeys_reached:Q", text="text:N")
    return (bars + text).properties(width=760, height=220)


def servqual_chart(con) -> alt.TopLevelMixin:
    gaps = _df(con, "select * from servqual_gaps order by pzb_rank").dropna(subset=["gap"])
    if gaps.empty:
        return _empty("no SERVQUAL ratings in the feedback")
    gaps["direction"] = gaps["gap"].map(lambda g: "perception below expectation" if g < 0 else "meets or exceeds")
    return alt.Chart(gaps).mark_bar().encode(
        y=alt.Y("dimension:N", sort=list(gaps["dimension"]), title="PZB dimension (by importance)"),
        x=alt.X("gap:Q", title="gap = perception - expectation (1-7 scale)"),
        color=alt.Color("direction:N", scale=alt.Scale(domain=["perception below expectation", "meets or exceeds"],
                                                       range=["#d62728", "#2ca02c"]), title=None),
        tooltip=["dimension:N", "responses:Q", alt.Tooltip("mean_expectation:Q", format=".2f"),
                 alt.Tooltip("mean_perception:Q", format=".2f"), alt.Tooltip("gap:Q", format=".2f"),
                 alt.Tooltip("weight:Q", format=".2f"), alt.Tooltip("weighted_gap:Q", format=".3f")],
    ).properties(width=760, height=200)


def ipa_chart(con) -> alt.TopLevelMixin:
    ipa = _df(con, "select * from importance_performance").dropna(subset=["importance", "performance"])
    method = next((m for m in IPA_IMPORTANCE if (ipa["importance_method"] == m).any()), "weights")
    ipa = ipa[ipa["importance_method"] == method]
    if ipa.empty:
        return _empty("no SERVQUAL ratings in the feedback")
    base = alt.Chart(ipa)
    x = alt.X("performance:Q", title="performance (mean perception)", scale=alt.Scale(zero=False))
    y = alt.Y("importance:Q", title=f"importance ({IPA_IMPORTANCE[method]})",
              scale=alt.Scale(zero=False))
    points = base.mark_point(filled=True, size=160).encode(
        x=x, y=y,
        color=alt.Color("quadrant:N", scale=alt.Scale(domain=list(QUADRANT_COLORS), range=list(QUADRANT_COLORS.values()))),
        tooltip=["dimension:N", "quadrant:N", alt.Tooltip("importance:Q", format=".3f"),
                 alt.Tooltip("performance:Q", format=".2f"), "responses:Q"])
    labels = base.mark_text(dy=-12).encode(x=x, y=y, text="dimension:N")
    vline = alt.Chart(ipa.head(1)).mark_rule(strokeDash=[4, 4], color="#999").encode(x="performance_threshold:Q")
    hline = alt.Chart(ipa.head(1)).mark_rule(strokeDash=[4, 4], color="#999").encode(y="importance_threshold:Q")
    return (vline + hline + points + labels).properties(width=760, height=340)


def drivers_chart(con) -> alt.TopLevelMixin:
    drivers = _df(con, "select * from key_drivers").dropna(subset=["share"])
    if drivers.empty:
        return _empty("too few responses that rate all five dimensions")
    drivers["label"] = drivers.apply(lambda r: f"{r.outcome} (R² {r.r2:.2f}, n = {r.responses_used:,})", axis=1)
    base = alt.Chart(drivers).encode(
        y=alt.Y("dimension:N", sort=list(DIMENSION_ORDER), title=None),
        tooltip=["outcome:N", "dimension:N", "rank:Q", alt.Tooltip("share:Q", format=".3f"),
                 alt.Tooltip("share_low:Q", format=".3f"), alt.Tooltip("share_high:Q", format=".3f"),
                 alt.Tooltip("relative_share:Q", format=".1%"), alt.Tooltip("standardized_coefficient:Q", format=".3f"),
                 "responses_used:Q", "responses_left_out:Q"])
    bars = base.mark_bar(color="#4c78a8").encode(x=alt.X("share:Q", title="share of R² (Shapley)"))
    interval = base.mark_rule(color="#222").encode(x="share_low:Q", x2="share_high:Q")
    labels = [drivers.loc[drivers["outcome"] == o, "label"].iloc[0] for o in OUTCOMES if (drivers["outcome"] == o).any()]
    return alt.layer(bars, interval).properties(width=220, height=150).facet(
        column=alt.Column("label:N", title=None, sort=labels))


def attribution_chart(con) -> alt.TopLevelMixin:
    columns = ", ".join(ATTRIBUTION_MODELS)
    rows = _df(con, f"select key, {columns} from moment_attribution where outcome = 'csat' and level = 'mot_step'")
    if rows.empty:
        return _empty("no visit has csat feedback")
    rows["key"] = rows["key"].fillna("(no step)")
    long = rows.melt(id_vars="key", var_name="model", value_name="deviation")
    long["model"] = long["model"].map(ATTRIBUTION_MODELS)
    return alt.Chart(long).mark_bar().encode(
        y=alt.Y("model:N", sort=list(ATTRIBUTION_MODELS.values()), title=None),
        x=alt.X("deviation:Q", title="csat deviation carried (sum over visits)"),
        color=alt.Color("model:N", sort=list(ATTRIBUTION_MODELS.values()), legend=None),
        row=alt.Row("key:N", title="MOT step", sort=[*(name for name, _ in MOT_STEPS.values()), "(no step)"],
                    header=alt.Header(labelAngle=0, labelAlign="left")),
        tooltip=["key:N", "model:N", alt.Tooltip("deviation:Q", format=".2f")],
    ).properties(width=640, height=80)


def cases_chart(con) -> alt.TopLevelMixin:
    ages = _df(con, f"""
        select priority, case when age_hours < 24 then '{CASE_AGES[0]}' when age_hours < 72 then '{CASE_AGES[1]}'
                              when age_hours < 168 then '{CASE_AGES[2]}' else '{CASE_AGES[3]}' end as age,
               count(*) as cases, count(*) filter (where sla_breached) as past_due
        from follow_up_cases where status = 'open' group by all""")
    if ages.empty:
        return _empty("no open follow-up cases")
    return alt.Chart(ages).mark_bar().encode(
        x=alt.X("age:N", sort=list(CASE_AGES), title="age of the open case", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("cases:Q", title="open cases"),
        color=alt.Color("priority:N", scale=alt.Scale(domain=["high", "medium", "low"],
                                                      range=["#d62728", "#ff7f0e", "#7f7f7f"])),
        tooltip=["age:N", "priority:N", "cases:Q", "past_due:Q"],
    ).properties(width=760, height=220)


def scorecard_chart(con) -> alt.TopLevelMixin:
    card = _df(con, "select * from mot_step_scorecard where level = 'touchpoint' order by mot_step, touchpoint")
    if card.empty:
        card = _df(con, "select * from mot_step_scorecard order by mot_step")
    if card.empty:
        return _empty("no moment has a MOT step")
    card["row"] = card.apply(lambda r: f"{int(r.mot_step)} {r.mot_step_name} · {r.touchpoint}" if isinstance(r.touchpoint, str)
                             else f"{int(r.mot_step)} {r.mot_step_name}", axis=1)
    card["avg_wait_min"] = card["avg_wait_s"] / 60
    metrics = {"positive_share": ("positive share", ".0%", 1), "negative_share": ("negative share", ".0%", -1),
               "avg_wait_min": ("avg wait (min)", ".1f", -1), "avg_csat": ("avg csat", ".2f", 1),
               "last_moment_share": ("last-moment share", ".1%", 0)}
    rows = []
    for _, r in card.iterrows():
        for column, (label, fmt, _) in metrics.items():
            value = r[column]
            rows.append({"row": r.row, "metric": label, "value": None if pd.isna(value) else float(value),
                         "text": "" if pd.isna(value) else format(float(value), fmt)})
    long = pd.DataFrame(rows)
    # colour: the value scaled to 0..1 within its metric, flipped where lower is better (red = bad, blue = good)
    for column, (label, _, sign) in metrics.items():
        part = long["metric"] == label
        values = long.loc[part, "value"]
        span = (values.max() - values.min()) or 1.0
        scaled = (values - values.min()) / span
        long.loc[part, "goodness"] = scaled if sign > 0 else 1 - scaled if sign < 0 else 0.5  # 0: neither good nor bad
    order = list(card["row"])
    base = alt.Chart(long).encode(
        x=alt.X("metric:N", sort=[m[0] for m in metrics.values()], title=None, axis=alt.Axis(labelAngle=0, orient="top")),
        y=alt.Y("row:N", sort=order, title=None))
    heat = base.mark_rect().encode(
        color=alt.Color("goodness:Q", scale=alt.Scale(scheme="redblue", domain=[0, 1]), title="relative (blue = better)"),
        tooltip=["row:N", "metric:N", "text:N"])
    text = base.mark_text(fontSize=11).encode(text="text:N")
    return (heat + text).properties(width=760, height=max(120, 22 * len(order)))


def quality_chart(con) -> alt.TopLevelMixin:
    quality = _df(con, "select dt, dataset, issue, error_kind, sum(rows) as rows from daily_quality group by all order by dt")
    if quality.empty:
        return _empty("no quarantined or duplicate rows")
    quality["dt"] = pd.to_datetime(quality["dt"]).dt.strftime("%Y-%m-%d")
    return alt.Chart(quality).mark_bar().encode(
        x=alt.X("dt:O", title="day (dt)"),
        y=alt.Y("sum(rows):Q", title="rows"),
        color=alt.Color("error_kind:N", title="error kind"),
        tooltip=["dt:O", "dataset:N", "issue:N", "error_kind:N", "sum(rows):Q"],
    ).properties(width=760, height=240)


def _kpis(con) -> list[tuple[str, str]]:
    j = con.execute("select count(*), coalesce(sum(moments), 0), count(*) filter (where completed_all_steps), "
                    "avg(csat) from journeys").fetchall()[0]
    at_risk = con.execute("select count(*) from at_risk_customers").fetchall()[0][0]
    sq = con.execute("select any_value(weighted_servqual_score), any_value(servperf_score) from servqual_gaps").fetchall()[0]
    fmt = lambda v, f: "–" if v is None else format(v, f)  # noqa: E731
    return [("journeys", f"{j[0]:,}"), ("moments", f"{j[1]:,}"),
            ("completed all 5 steps", f"{j[2] / j[0]:.1%}" if j[0] else "–"), ("average csat", fmt(j[3], ".2f")),
            ("customers at risk", f"{at_risk:,}"), ("weighted SERVQUAL gap", fmt(sq[0], "+.2f")),
            ("SERVPERF", fmt(sq[1], ".2f"))]


def _at_risk_table(con, limit: int = 15) -> str:
    rows = con.execute("select customer_id, latest_visit_id, cast(ended_at as varchar), risk_reason, last_touchpoint, "
                       f"evidence_text, evidence from at_risk_customers limit {int(limit)}").fetchall()
    head = "".join(f"<th>{h}</th>" for h in ("customer", "latest visit", "ended", "why", "last touchpoint", "what was said", "evidence"))
    body = "".join("<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


SECTIONS = {
    "satisfaction": ("Journey satisfaction by aggregator",
                     "Moment scores are +1 positive, -1 negative, 0 neutral. Which aggregation of moments predicts overall "
                     "satisfaction is debated, so four are shown side by side; the right panel shows how each moves with csat."),
    "channel_paths": ("Channel paths of person journeys",
                      "A person's visits across channels (app, phone, branch, ...) within the journey gap form one "
                      "journey; the most common channel sequences, coloured by their mean peak-end score."),
    "funnel": ("MOT five-step funnel", "Journeys that reached every step from 1 to n, with the share lost at each step."),
    "servqual": ("SERVQUAL gaps", "Mean perception minus mean expectation per PZB dimension, most important first."),
    "ipa": ("Importance-performance analysis",
            "Dashed lines are the mean importance and the mean performance; top-left is where to concentrate."),
    "drivers": ("Key drivers",
                "Share of each outcome's explained variance carried by each dimension's perception (Shapley decomposition "
                "of R²; the shares sum to R²); the black line is a bootstrap 90 % interval: overlapping intervals mean "
                "the ranking of those dimensions is not sure."),
    "attribution": ("Which moments carry the score",
                    "Each scored visit's csat deviation from the mean, split over its moments by five attribution models "
                    "and summed per MOT step: negative bars are where satisfaction is lost."),
    "cases": ("Open follow-up cases by age", "At-risk visits not yet followed up (MOT step 5), by priority."),
    "scorecard": ("MOT step scorecard", "Per playbook touchpoint; colour compares touchpoints within each column (blue = better)."),
    "quality": ("Daily data quality", "Quarantined and duplicate input rows per day and error kind."),
}
BUILDERS = {"satisfaction": satisfaction_chart, "channel_paths": channel_paths_chart, "funnel": funnel_chart, "servqual": servqual_chart,
            "ipa": ipa_chart, "drivers": drivers_chart, "attribution": attribution_chart, "cases": cases_chart,
            "scorecard": scorecard_chart, "quality": quality_chart}

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>motpipe journey report</title>
<style>
  body {{ font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1180px; padding: 24px; color: #222; }}
  h1 {{ margin-bottom: 4px; }} .meta {{ color: #666; font-size: 13px; margin-bottom: 20px; }}
  .kpis {{ display: flex; flex-wrap: wrap; gap: 12px; margin-bottom: 24px; }}
  .kpi {{ background: #f4f6f8; border-radius: 8px; padding: 12px 16px; min-width: 130px; }}
  .kpi .v {{ font-size: 22px; font-weight: 600; }} .kpi .k {{ font-size: 12px; color: #555; }}
  .grid {{ display: grid; grid-template-columns: 1fr; gap: 24px; }}
  section {{ border: 1px solid #e3e6ea; border-radius: 8px; padding: 16px; overflow-x: auto; }}
  section h2 {{ font-size: 17px; margin: 0 0 4px; }} section p {{ font-size: 13px; color: #555; margin: 0 0 10px; }}
  .chart-error {{ color: #b00; }}
  table {{ border-collapse: collapse; font-size: 12px; width: 100%; }}
  th, td {{ border-bottom: 1px solid #eee; padding: 4px 6px; text-align: left; vertical-align: top; }}
</style>
<script type="text/javascript">
// vega-embed bundle (vega {vega_version}, vega-lite {vegalite_version}), embedded so the report works offline
{bundle}
</script>
</head>
<body>
<h1>Customer journeys: moments of truth</h1>
<div class="meta">data: {out_dir} &middot; views built {built_at} &middot; report written {written_at}</div>
<div class="kpis">{kpis}</div>
<div class="grid">
{sections}
</div>
<section style="margin-top: 24px"><h2>Customers to follow up</h2>
<p>The last moment of their latest journey was negative, or that journey did not end resolved (first {at_risk_limit}; full list: <code>motpipe query --db DB at_risk_customers</code>).</p>
{at_risk}
</section>
<script type="text/javascript">
const specs = {specs};
for (const [name, spec] of Object.entries(specs)) {{
  const el = document.getElementById('chart-' + name);
  vegaEmbed(el, spec, {{renderer: 'svg', actions: false}})
    .then(() => {{ el.dataset.rendered = 'true'; }})
    .catch((error) => {{ el.dataset.error = String(error); el.innerHTML = '<p class="chart-error">' + String(error) + '</p>'; }});
}}
</script>
</body>
</html>
"""


def _script_json(value: object) -> str:
    """JSON that is safe inside a <script> element."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/").replace("<!--", "<\\!--")


def javascript_bundle() -> tuple[str, str, str]:
    """The vega-embed bundle (with vega and vega-lite) matching altair's Vega-Lite version, and the versions."""
    from altair.utils._importers import import_vl_convert, vl_version_for_vl_convert

    vlc = import_vl_convert()  # raises an ImportError naming vl-convert-python when it is missing
    version = vl_version_for_vl_convert()
    return vlc.javascript_bundle(vl_version=version), getattr(alt, "VEGA_VERSION", "?"), getattr(alt, "VEGALITE_VERSION", version)


def build_report(db: str, html_path: str, at_risk_limit: int = 15) -> dict:
    """Write the report for the views in `db` to `html_path` (local or on a Beam filesystem); returns {'path',
    'charts', 'bytes'}."""
    con = connect(db)
    try:
        settings = dict(con.execute(f"select key, value from {SETTINGS_TABLE}").fetchall())
        specs = {}
        for name in CHARTS:
            chart = BUILDERS[name](con)
            specs[name] = chart.configure_view(stroke=None).to_dict()
        kpis = _kpis(con)
        at_risk = _at_risk_table(con, at_risk_limit)
    finally:
        con.close()
    bundle, vega_version, vegalite_version = javascript_bundle()
    sections = "\n".join(
        f'<section><h2>{html.escape(SECTIONS[name][0])}</h2><p>{html.escape(SECTIONS[name][1])}</p>'
        f'<div class="chart" id="chart-{name}"></div></section>' for name in CHARTS)
    page = PAGE.format(
        vega_version=vega_version, vegalite_version=vegalite_version, bundle=bundle,
        out_dir=html.escape(settings.get("out_dir", "")), built_at=html.escape(settings.get("built_at", "")),
        written_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        kpis="".join(f'<div class="kpi"><div class="v">{html.escape(v)}</div><div class="k">{html.escape(k)}</div></div>'
                     for k, v in kpis),
        sections=sections, at_risk=at_risk, at_risk_limit=at_risk_limit, specs=_script_json(specs))
    data = page.encode("utf-8")
    with FileSystems.create(html_path, mime_type="text/html", compression_type=CompressionTypes.UNCOMPRESSED) as file:
        file.write(data)
    return {"path": html_path, "charts": list(CHARTS), "bytes": len(data)}
