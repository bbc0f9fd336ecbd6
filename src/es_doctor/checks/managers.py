"""Class 4, 'Communication Inter-Managers': manager status, discovery, event bus."""

from __future__ import annotations

from es_doctor.checks.common import excerpt, from_failure, log_window, past_window, plural, word_status
from es_doctor.checks.context import CheckContext
from es_doctor.checks.registry import Outcome, check, counted, crit, ev, ok, over, unknown, warn
from es_doctor.findings import Status, worst
from es_doctor.signals import event_bus_from_scrapes, grade_level

API = "startup.api-port"
METRICS = "monitoring.metrics-endpoint"


@check("inter-manager.status", description="Every manager is healthy in /api/v1/managers/status.",
       requires=(API,), components=("service",))
def managers_status(ctx: CheckContext) -> Outcome:
    result = ctx.service().managers()
    if result.failure is not None:
        return from_failure(result.failure, "/api/v1/managers/status")
    states = {m.name: word_status(m.status) for m in result.unwrap()}
    if not states:
        return unknown("/api/v1/managers/status lists no manager: nothing says the managers are healthy")
    bad = {name: s for name, s in states.items() if s is not Status.OK}
    evidence = [ev("managers", len(states))]
    if not bad:
        return ok(f"all {_managers(list(states))} healthy", *evidence)
    evidence.append(ev("not healthy", ", ".join(f"{n} ({s.value})" for n, s in sorted(bad.items()))))
    status = worst(list(bad.values()))
    return Outcome(status, f"{len(bad)} of {len(states)} managers not healthy: {', '.join(sorted(bad))}", evidence)


def _managers(names: list[str]) -> str:
    """"25 managers and the coordinator": the status list holds the managers discovery expects, and the
    entries that are not managers (the coordinator) are named apart, so the two checks' counts agree."""
    others = sorted(n for n in names if not n.endswith("manager"))
    managers = len(names) - len(others)
    if not others or not managers:
        return counted(len(names), "manager")
    return f"{counted(managers, 'manager')} and {', '.join(others)}"


@check("inter-manager.discovery", description="Discovery sees every manager (/api/v1/managers/discovery).",
       requires=(API,), components=("service",))
def discovery(ctx: CheckContext) -> Outcome:
    result = ctx.service().discovery()
    if result.failure is not None:
        return from_failure(result.failure, "/api/v1/managers/discovery")
    found = result.unwrap()
    if not found.expected:
        return unknown("/api/v1/managers/discovery expects no manager: discovery cannot be judged")
    evidence = [ev("expected", len(found.expected)), ev("discovered", len(found.discovered))]
    if found.missing:
        return crit(f"discovery misses {len(found.missing)} of {len(found.expected)} managers", *evidence,
                    ev("missing", ", ".join(found.missing)))
    return ok(f"discovery sees all {len(found.expected)} managers", *evidence)


@check("inter-manager.event-bus", description="Event bus saturation (depth/capacity: > 80 % WARN, > 95 % CRIT) "
       "and dropped events.", requires=(METRICS,), components=("service",))
def event_bus(ctx: CheckContext) -> Outcome:
    window = ctx.metrics_window()
    if window.failure is not None:
        return unknown(f"cannot read the event bus metrics: {window.failure}")
    w = window.unwrap()
    names = ctx.target.metrics
    bus = event_bus_from_scrapes(names, w.before, w.after)
    if bus is None:
        return unknown(f"the service exposes no {names.event_bus_depth}/{names.event_bus_capacity}")
    th = ctx.target.thresholds
    pct = bus.use_pct
    status = bus.status(th)
    evidence = [ev("saturation", round(pct, 1), f"> {th.event_bus_saturation_warn_pct:g} % WARN, "
                                                f"> {th.event_bus_saturation_crit_pct:g} % CRIT", "%"),
                ev("depth", int(bus.depth)), ev("capacity", int(bus.capacity)),
                ev("dropped in window", int(bus.dropped)),
                ev("window", round(w.seconds, 1), unit="s"), ev("window from", w.source)]
    level = grade_level(pct, th.event_bus_saturation_warn_pct, th.event_bus_saturation_crit_pct)
    summary = (f"event bus {int(bus.depth)}/{int(bus.capacity)} ({pct:.1f} %), {counted(int(bus.dropped), 'event')} "
               f"dropped in the last {w.seconds:.0f} s"
               + over(level, th.event_bus_saturation_warn_pct, th.event_bus_saturation_crit_pct, " %"))
    return Outcome(status, summary, evidence)


@check("inter-manager.eventbus-log", description="EventBus errors in the service's recent log.",
       components=("service",))
def eventbus_log(ctx: CheckContext) -> Outcome:
    lines = log_window(ctx)
    if isinstance(lines, Outcome):
        return lines
    bad = [line for line in lines
           if (line.field("component") == "EventBus" or "EventBus" in line.raw) and line.level in ("ERROR", "WARN",
                                                                                                  "FATAL")]
    window = ctx.target.thresholds.log_window_s
    if bad:
        when, past = past_window(bad, window)
        return warn(f"{plural(len(bad), 'EventBus error/warning line')} {when}", ev("lines", len(bad)), *past,
                    ev("latest", excerpt(bad)))
    return ok(f"no EventBus errors in the last {window:g} s of the log", ev("window", window, unit="s"))
