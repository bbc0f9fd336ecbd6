"""How a load test reads: the result as a table (plain text) or JSON, and the live progress line."""

from __future__ import annotations

import json

from es_doctor.load.plan import Plan
from es_doctor.load.stats import LoadResult, Recorder, is_error, pct
from es_doctor.secrets import clean, mask_data


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def render_json(res: LoadResult) -> str:
    return json.dumps(mask_data(res.model_dump(mode="json")), indent=2, ensure_ascii=False)


def render_table(res: LoadResult) -> str:
    lat = res.latency_ms
    lines = [
        f"{res.status.symbol} load test of target '{res.target}' ({res.scenario}, run {res.run_id}): "
        f"{res.status.value}" + (" (interrupted: partial result)" if res.interrupted else ""),
        f"  asked      {res.rps_asked:g} req/s for {res.duration_asked_s:g}s, at most {res.concurrency} at once, "
        f"timeout {res.timeout_s:g}s",
        f"  ran        {res.elapsed_s:.1f}s: {res.scheduled} due, {res.scheduled - res.dropped} sent, "
        f"{res.completed - res.dropped} answered or failed, {res.dropped} dropped, "
        f"{res.cancelled} cancelled at the stop",
        f"  throughput {res.throughput_rps:.1f} req/s",
        f"  latency    p50 {_ms(lat['p50'])}  p95 {_ms(lat['p95'])}  p99 {_ms(lat['p99'])}  max {_ms(lat['max'])}"
        "  (from each request's due time)",
        f"  errors     {res.errors} ({'-' if res.error_rate_pct is None else f'{res.error_rate_pct:.2f} %'})  "
        + "  ".join(f"{k}: {v}" for k, v in res.outcomes.items()),
        f"  late       {res.late} sent > 10 ms after their due time "
        f"({'-' if res.late_pct is None else f'{res.late_pct:.1f} %'}; {res.late_for_slot} waited for a free "
        f"connection), max lag {res.max_lag_ms:.1f} ms" + (" : the generator fell behind" if res.generator_limited
                                                            else ""),
        "",
        f"  {'operation':<10} {'request':<32} {'count':>6} {'errors':>6} {'p95':>10}",
    ]
    for op in res.operations:
        lines.append(f"  {op.op:<10} {op.method + ' ' + op.path:<32} {op.requests:>6} {op.errors:>6} "
                     f"{_ms(op.p95_ms):>10}")
    lines.append("")
    for g in res.grades:
        lines.append(f"  {g.status.symbol} {g.name:<12} {g.summary} (threshold {g.threshold})")
    data = res.test_data
    if data:
        removed = data.get("removed") or {}
        text = ", ".join(f"{store}: {n}" for store, n in removed.items()) if isinstance(removed, dict) else ""
        lines.append(f"  test data  marker '{data.get('marker')}', {data.get('tasks_created', 0)} task(s) created"
                     + (f"; removed: {text}" if text else "") + (f"; {data['note']}" if data.get("note") else ""))
        for left in data.get("left") or []:
            lines.append(f"  ! left: {left}")
    lines.append(f"exit {res.exit_code}")
    return clean("\n".join(lines))


def progress_line(plan: Plan, rec: Recorder, elapsed: float) -> str:
    """One line for the live display: progress, rate, recent p95, errors, late share."""
    done = min(elapsed / plan.duration_s, 1.0) if plan.duration_s else 1.0
    bar = "█" * int(done * 24) + "░" * (24 - int(done * 24))
    p95 = rec.latency.percentile(0.95)
    errors = sum(n for kind, n in rec.outcomes.items() if is_error(kind))
    rate = rec.completed / elapsed if elapsed > 0 else 0.0
    return (f"{bar} {elapsed:5.1f}/{plan.duration_s:g}s  sent {rec.scheduled}  done {rec.completed} "
            f"({rate:.0f}/s)  p95 {'-' if p95 is None else f'{p95 * 1000:.0f} ms'}  errors {errors}  "
            f"late {pct(rec.late, rec.scheduled):.1f} %")

