"""``es-doctor dashboard``: the guide's "Dashboard Recommandé" as a Grafana dashboard, for one target.

Built with Grafana's own model (PyPI ``grafana-foundation-sdk``: typed builders that serialise to the
dashboard JSON Grafana imports), from the target's metric names, scrape jobs and thresholds; each panel's
description names the es-doctor finding that watches the same signal and its cure (``es_doctor.cures``).
The queries are the signals' PromQL (:mod:`es_doctor.signals`, the definitions the checks and the alert
rules use); the time series' rates use Grafana's ``$__rate_interval`` (:data:`RATE_INTERVAL`), so a query
runs against Prometheus once that is replaced by a duration. Panels are laid out in Grafana's 24-column
grid, and each query whose unit is not its panel's (CPU beside memory) carries its own unit and axis.

The SDK is imported here only, and this module only by the ``dashboard`` command: ``es-doctor --help``
does not load it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import common as common_builder
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from es_doctor.config import Target, parse_size
from es_doctor.cures import escalation_for, remedy_for
from es_doctor.errors import CantCreateError
from es_doctor.signals import (
    API_LATENCY,
    ERROR_RATE,
    PROBE_ROUTES,
    Selectors,
    check_metric_names,
    memory_promql,
    promql_duration,
    uptime_promql,
)

#: the Prometheus datasource is a dashboard variable: the dashboard imports into any Grafana
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
GREEN, ORANGE, RED = "green", "orange", "red"
#: Grafana's window for rate(): at least four scrape intervals, following the dashboard's step
RATE_INTERVAL = "$__rate_interval"
#: Grafana's grid is 24 columns wide
GRID_COLUMNS = 24


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str
    #: the query's own unit and axis when it is not the panel's (None: the panel's)
    unit: str | None = None


@dataclass(frozen=True)
class PanelSpec:
    """One widget: its queries, and the findings whose cure its description names."""

    title: str
    kind: str  # "stat" | "timeseries"
    queries: tuple[Query, ...]
    findings: tuple[str, ...]
    what: str
    unit: str = "short"
    #: (value, colour) steps above the base colour, from the target's thresholds
    steps: tuple[tuple[float, str], ...] = ()
    base: str = GREEN
    #: value → text (UP/DOWN)
    names: tuple[tuple[str, str, str], ...] = ()
    width: int = 12
    height: int = 8


def _share(pct: float) -> float:
    """A percentage as the share Grafana's ``percentunit`` shows (99.9 → 0.999, not 0.9990000000000001)."""
    return round(pct / 100, 12)


def _sec(ms: float) -> float:
    return round(ms / 1000, 12)


def runbook_text(finding: str) -> str:
    """What the operator runs for the finding that watches this panel's signal (es_doctor.cures)."""
    remedy = remedy_for(finding)
    check = f"`es-doctor diagnose --check {finding}`"
    if remedy is None:
        return f"{check}; no runbook cures it: escalate, level {escalation_for(finding)} (`es-doctor escalate`)"
    return f"{check}, cure `es-doctor fix {finding}` (runbook {remedy.runbook})"


def panels_for(target: Target) -> list[PanelSpec]:
    """The guide's eight widgets (and the availability row's uptime), as the signals' PromQL over the target's
    names (ConfigError when a configured metric name is not one)."""
    m, th = target.metrics, target.thresholds
    check_metric_names(target.metrics)
    s = Selectors(tuple(target.prometheus.jobs))
    on = s.on
    window = promql_duration(th.uptime_window_s)
    limit = parse_size(target.service.memory_limit)

    def latency(q: str) -> Query:
        return Query(API_LATENCY.quantile_promql(target, float(q), RATE_INTERVAL), f"p{round(float(q) * 100)}")

    def error_rate(span: str, label: str) -> Query:
        return Query(ERROR_RATE.ratio_promql(target, span), label)

    up_names = (("1", "UP", GREEN), ("0", "DOWN", RED))
    return [
        PanelSpec("Service status", "stat", (Query(f"min({on('up')})", "service"),), ("startup.api-port",),
                  "UP while Prometheus scrapes every instance of the service, DOWN as soon as one fails.",
                  steps=((1, GREEN),), base=RED, names=up_names, width=6, height=6),
        PanelSpec(f"Uptime ({window})", "stat", (Query(f"min({uptime_promql(target)})", "uptime"),),
                  ("monitoring.uptime",),
                  f"Share of successful scrapes over {window} (what history exists): the guide's availability "
                  f"row, WARNING under {th.uptime_warn_pct:g} %, CRITICAL under {th.uptime_crit_pct:g} %.",
                  unit="percentunit", steps=((_share(th.uptime_crit_pct), ORANGE), (_share(th.uptime_warn_pct), GREEN)),
                  base=RED, width=6, height=6),
        PanelSpec("Error rate (1 h, 24 h)", "stat", (error_rate("1h", "1 h"), error_rate("24h", "24 h")),
                  ("performance.error-rate",),
                  f"Share of the users' requests answered 5xx (probe routes {', '.join(PROBE_ROUTES)} left out): "
                  f"WARNING over {th.error_rate_warn_pct:g} %, CRITICAL over {th.error_rate_crit_pct:g} % (es-doctor "
                  f"grades it on at least {th.min_requests} requests, by its Wilson lower bound).",
                  unit="percentunit",
                  steps=((_share(th.error_rate_warn_pct), ORANGE), (_share(th.error_rate_crit_pct), RED)), height=6),
        PanelSpec("API response time (p50, p95, p99)", "timeseries",
                  tuple(latency(q) for q in ("0.5", "0.95", "0.99")), ("performance.latency",),
                  f"The users' requests (probe routes left out). The guide's thresholds are on p95: WARNING over "
                  f"{th.latency_p95_warn_ms:g} ms, CRITICAL over {th.latency_p95_crit_ms:g} ms.", unit="s",
                  steps=((_sec(th.latency_p95_warn_ms), ORANGE), (_sec(th.latency_p95_crit_ms), RED))),
        PanelSpec("Memory / CPU", "timeseries",
                  (Query(memory_promql(target, limit), "memory (share of the limit)"),
                   Query(f"sum(rate({on('process_cpu_seconds_total')}[{RATE_INTERVAL}]))", "CPU (cores)",
                         unit="short")),
                  ("performance.memory",),
                  f"Resident memory as a share of the {target.service.memory_limit} limit (left axis; WARNING over "
                  f"{th.memory_warn_pct:g} %, CRITICAL over {th.memory_crit_pct:g} %), and CPU in cores (right axis).",
                  unit="percentunit", steps=((_share(th.memory_warn_pct), ORANGE), (_share(th.memory_crit_pct), RED))),
        PanelSpec("Vector operations/s", "timeseries",
                  (Query(f"sum by (op, result) (rate({on(m.vector_operations)}[{RATE_INTERVAL}]))",
                         "{{op}} {{result}}"),),
                  ("vectors.insert-errors", "vectors.search"),
                  f"Inserts and searches per second, ok and error (the guide: insert errors over "
                  f"{th.vector_insert_error_warn_pct:g} %, search latency over {th.vector_search_latency_warn_ms:g} ms"
                  " are WARNINGs).", unit="ops"),
        PanelSpec("Manager status", "stat",
                  (Query(f"min by (manager) ({on(m.managers_up)})", "{{manager}}"),), ("inter-manager.status",),
                  "One cell per manager: UP or DOWN (its email_sender_managers_up).",
                  steps=((1, GREEN),), base=RED, names=up_names, width=24),
        PanelSpec("Event bus throughput", "timeseries",
                  (Query(f"sum(rate({on(m.event_bus_published)}[{RATE_INTERVAL}]))", "published/s"),
                   Query(f"sum(rate({on(m.event_bus_dropped)}[{RATE_INTERVAL}]))", "dropped/s")),
                  ("inter-manager.event-bus",),
                  f"Events published and dropped per second (es-doctor also watches the queue's fill: WARNING over "
                  f"{th.event_bus_saturation_warn_pct:g} %, CRITICAL over {th.event_bus_saturation_crit_pct:g} %).",
                  unit="ops"),
        PanelSpec("Database connections", "timeseries",
                  (Query(f"sum by (state) ({on(m.db_connections)})", "{{state}}"),), ("startup.postgres",),
                  "The service's PostgreSQL pool: active and idle connections.", unit="short"),
    ]


def layout(specs: list[PanelSpec]) -> list[model.GridPos]:
    """Each panel's place in the 24-column grid: left to right, a new row when the next does not fit."""
    out: list[model.GridPos] = []
    x = y = row_height = 0
    for spec in specs:
        width = min(spec.width, GRID_COLUMNS)
        if x + width > GRID_COLUMNS:
            x, y, row_height = 0, y + row_height, 0
        out.append(model.GridPos(h=spec.height, w=width, x=x, y=y))
        x += width
        row_height = max(row_height, spec.height)
    return out


def _thresholds(spec: PanelSpec) -> dash.ThresholdsConfig:
    steps = [model.Threshold(value=None, color=spec.base)]  # the base step: no value (-Infinity)
    steps += [model.Threshold(value=value, color=colour) for value, colour in spec.steps]
    return dash.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)


def _mappings(spec: PanelSpec) -> list[model.ValueMapping]:
    if not spec.names:
        return []
    options = {value: model.ValueMappingResult(text=text, color=colour, index=i)
               for i, (value, text, colour) in enumerate(spec.names)}
    return [model.ValueMap(options=options)]


def _panel(spec: PanelSpec, name: str, panel_id: int, place: model.GridPos) -> cogbuilder.Builder[model.Panel]:
    description = f"{spec.what}\n\nes-doctor (target {name}): " + "; ".join(
        f"{finding}: {runbook_text(finding)}" for finding in spec.findings)
    builder: stat.Panel | timeseries.Panel
    if spec.kind == "stat":
        builder = (stat.Panel().color_mode(common.BigValueColorMode.BACKGROUND)
                   .graph_mode(common.BigValueGraphMode.NONE)
                   .text_mode(common.BigValueTextMode.VALUE_AND_NAME if len(spec.queries) > 1 or "{{" in
                              spec.queries[0].legend else common.BigValueTextMode.AUTO)
                   .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"])))
    else:
        builder = (timeseries.Panel().line_width(1).fill_opacity(10)
                   .legend(common_builder.VizLegendOptions().show_legend(True)
                           .display_mode(common.LegendDisplayMode.LIST).placement(common.LegendPlacement.BOTTOM))
                   .tooltip(common_builder.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI)
                            .sort(common.SortOrder.DESCENDING))
                   .thresholds_style(common_builder.GraphThresholdsStyleConfig()
                                     .mode(common.GraphTresholdsStyleMode.LINE if spec.steps
                                           else common.GraphTresholdsStyleMode.OFF)))
    builder = (builder.id(panel_id).title(spec.title).description(description).datasource(DATASOURCE)
               .unit(spec.unit).thresholds(_thresholds(spec)).grid_pos(place))
    if spec.names:
        builder = builder.mappings(_mappings(spec))
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        if query.unit is not None:  # its own unit, on its own axis
            builder = builder.with_override(model.MatcherConfig(id_val="byFrameRefID", options=ref),
                                            [model.DynamicConfigValue("unit", query.unit),
                                             model.DynamicConfigValue("custom.axisPlacement", "right")])
        builder = builder.with_target(prometheus.Dataquery().expr(query.expr).legend_format(query.legend)
                                      .ref_id(ref).range().datasource(DATASOURCE))
    return builder


def build(target: Target, name: str) -> model.Dashboard:
    """The dashboard for target ``name``."""
    uid = "es-doctor-" + re.sub(r"[^A-Za-z0-9_-]", "-", name)[:29]
    builder = (dash.Dashboard(f"EMAIL_SENDER_1: {name}").uid(uid).tags(["es-doctor", "email-sender"])
               .description("The troubleshooting guide's recommended dashboard (es-doctor dashboard): its eight "
                            "widgets and the availability row, with the guide's thresholds from this target's "
                            "es-doctor.yaml; each panel names the es-doctor finding and cure for its signal.")
               .time("now-24h", "now").refresh("30s").timezone("browser")
               .with_variable(dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus")))
    specs = panels_for(target)
    for panel_id, (spec, place) in enumerate(zip(specs, layout(specs), strict=True), start=1):
        builder = builder.with_panel(_panel(spec, name, panel_id, place))
    return builder.build()


def to_json(dashboard: model.Dashboard) -> str:
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def from_json(text: str) -> model.Dashboard:
    """Read a dashboard JSON back into the SDK's model (panel options and queries by their plugin types)."""
    from grafana_foundation_sdk.cog.plugins import register_default_plugins

    register_default_plugins()
    return model.Dashboard.from_json(json.loads(text))


def queries(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every query of a dashboard JSON."""
    return [(str(panel.get("title")), str(t["expr"])) for panel in data.get("panels", [])
            for t in panel.get("targets", []) if "expr" in t]


def write_public(path: Path, text: str) -> None:
    """Write ``path`` atomically (a temporary file beside it, fsync, rename), 0644: a dashboard holds no secret."""
    from es_doctor.files import write_atomically

    try:
        write_atomically(path, text, 0o644, keep_mode=False)
    except OSError as exc:
        raise CantCreateError(f"cannot write {path}: {exc.strerror or exc}") from exc
