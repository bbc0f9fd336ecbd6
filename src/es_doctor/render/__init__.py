"""Report renderers, one per format."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from es_doctor.findings import Report


class Format(StrEnum):
    table = "table"
    json = "json"
    junit = "junit"
    nagios = "nagios"
    prometheus = "prometheus"


def renderer(fmt: Format) -> Callable[[Report, bool], str]:
    """The function turning a report into text (``detailed`` adds evidence for OK findings)."""
    if fmt is Format.json:
        from es_doctor.render.json_report import render
    elif fmt is Format.junit:
        from es_doctor.render.junit import render
    elif fmt is Format.nagios:
        from es_doctor.render.nagios import render
    elif fmt is Format.prometheus:
        from es_doctor.render.prometheus import render
    else:
        from es_doctor.render.table import render

    def sanitized(report: Report, detailed: bool) -> str:
        from es_doctor.findings import sanitize_report

        return render(sanitize_report(report), detailed)

    return sanitized
