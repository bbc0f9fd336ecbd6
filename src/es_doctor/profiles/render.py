"""``es-doctor profile`` output: a summary as text (``go tool pprof -top``'s columns) or JSON."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from es_doctor.profiles.store import Saved
from es_doctor.profiles.summary import Comparison, Entry, Summary
from es_doctor.secrets import clean
from es_doctor.units import utc_iso

SCHEMA = "es-doctor.profile/1"


def amount(value: float, unit: str) -> str:
    """A value in its unit as pprof shows it: bytes in kB/MB, nanoseconds in ms/s, counts as is."""
    if unit == "bytes":
        for size, name in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
            if abs(value) >= size:
                return f"{value / size:.2f} {name}"
        return f"{value:.0f} B"
    if unit == "nanoseconds":
        return f"{value / 1e9:.2f} s" if abs(value) >= 1e9 else f"{value / 1e6:.0f} ms"
    return f"{value:.0f}"


def pprof_commands(path: Path) -> list[str]:
    quoted = shlex.quote(str(path))
    return [f"go tool pprof -top {quoted}", f"go tool pprof -http=127.0.0.1:0 {quoted}"]


def _rows(summary: Summary, entries: tuple[Entry, ...]) -> list[str]:
    out = [f"  {'flat':>12} {'flat%':>7} {'cum':>12} {'cum%':>7}  function"]
    for e in entries:
        out.append(f"  {amount(e.flat, summary.unit):>12} {summary.share(e.flat):6.2f}% "
                   f"{amount(e.cum, summary.unit):>12} {summary.share(e.cum):6.2f}%  {clean(e.function)}")
    return out


def text(summary: Summary, *, target: str, url: str, path: Path, top: int,
         comparison: Comparison | None = None, previous: Path | None = None) -> str:
    what = {"cpu": f"CPU profile ({summary.duration_s:.0f} s)", "heap": "heap profile (in use)",
            "goroutine": "goroutine profile"}[summary.kind]
    lines = [f"{what} of target {target}: {clean(url)}", f"saved: {path}", ""]
    total = amount(summary.total, summary.unit)
    lines.append({"cpu": f"{total} of CPU samples", "heap": f"{total} in use",
                  "goroutine": f"{total} goroutines"}[summary.kind])
    if summary.total == 0:
        lines.append("  (no samples: nothing ran, or nothing is held, during the profile)")
    else:
        lines += ["", f"top {top} by flat ({summary.sample_type} in the function itself):",
                  *_rows(summary, summary.top(top, "flat")),
                  "", f"top {top} by cumulative (with its callees):", *_rows(summary, summary.top(top, "cum"))]
    if summary.kind == "goroutine" and summary.total:
        lines += ["", "goroutines by state (inferred from where each one waits):"]
        lines += [f"  {n:>8}  {clean(state)}" for state, n in summary.states]
        lines += ["", "goroutines by the function they run (go f()):"]
        lines += [f"  {n:>8}  {clean(name)}" for name, n in summary.started_in[:top]]
    if comparison is not None and previous is not None:
        lines += ["", *compare_text(comparison, previous, top)]
    lines += ["", "for a deeper look:", *(f"  {c}" for c in pprof_commands(path))]
    return "\n".join(lines)


def compare_text(comparison: Comparison, previous: Path, top: int) -> list[str]:
    unit = comparison.unit
    what = "goroutines by the function they run" if comparison.kind == "goroutine" else "heap in use by function"
    delta = comparison.total_after - comparison.total_before
    lines = [f"compared with {previous.name}: total {amount(comparison.total_before, unit)} → "
             f"{amount(comparison.total_after, unit)} ({'+' if delta >= 0 else ''}{amount(delta, unit)})"]
    grew = comparison.grew()
    if not grew:
        lines.append(f"  nothing grew ({what})")
        return lines
    lines.append(f"what grew ({what}):")
    lines.append(f"  {'before':>12} {'after':>12} {'delta':>12}  function")
    for c in grew[:top]:
        lines.append(f"  {amount(c.before, unit):>12} {amount(c.after, unit):>12} "
                     f"{'+' + amount(c.delta, unit):>12}  {clean(c.function)}")
    return lines


def _entry(summary: Summary, e: Entry) -> dict[str, Any]:
    return {"function": clean(e.function), "flat": e.flat, "flat_pct": round(summary.share(e.flat), 2),
            "cum": e.cum, "cum_pct": round(summary.share(e.cum), 2)}


def as_json(summary: Summary, *, target: str, url: str, path: Path, top: int,
            comparison: Comparison | None = None, previous: Path | None = None) -> str:
    doc: dict[str, Any] = {
        "schema": SCHEMA, "target": target, "kind": summary.kind, "url": clean(url), "saved": str(path),
        "sample_type": summary.sample_type, "unit": summary.unit, "total": summary.total,
        "duration_s": summary.duration_s,
        "top_flat": [_entry(summary, e) for e in summary.top(top, "flat")],
        "top_cum": [_entry(summary, e) for e in summary.top(top, "cum")],
        "pprof_commands": pprof_commands(path),
    }
    if summary.kind == "goroutine":
        doc["goroutines"] = {"total": summary.total,
                             "by_state": {clean(k): v for k, v in summary.states},
                             "by_function": {clean(k): v for k, v in summary.started_in}}
    if comparison is not None and previous is not None:
        doc["compare"] = {"with": str(previous), "total_before": comparison.total_before,
                          "total_after": comparison.total_after,
                          "grew": [{"function": clean(c.function), "before": c.before, "after": c.after,
                                    "delta": c.delta} for c in comparison.grew()[:top]]}
    return json.dumps(doc, indent=2)


def listing_text(saved: list[Saved]) -> str:
    if not saved:
        return "no saved profiles"
    width = max(len("target"), *(len(s.target) for s in saved))
    lines = [f"{'target':<{width}}  {'kind':<9}  {'taken (UTC)':<20}  {'size':>10}  name"]
    for s in saved:
        lines.append(f"{s.target:<{width}}  {s.kind:<9}  {s.taken:%Y-%m-%d %H:%M:%S}  "
                     f"{amount(s.size, 'bytes'):>10}  {s.name}")
    lines.append(f"\n{len(saved)} profile(s) in {saved[0].path.parent.parent}")
    return "\n".join(lines)


def listing_json(saved: list[Saved]) -> str:
    return json.dumps({"schema": SCHEMA, "profiles": [
        {"target": s.target, "kind": s.kind, "taken": utc_iso(s.taken), "size": s.size,
         "name": s.name, "path": str(s.path)} for s in saved]}, indent=2)
