"""The finishing pass over the command tree's help: examples, whole one-line descriptions, plain arguments.

typer builds click commands from the command functions; :func:`polish` walks the tree once per run and
gives every command an "Examples:" epilog (from :data:`EXAMPLES`), every group's command list the whole
first paragraph of each command's help (click would cut it at 45 characters with "..."), and every
argument a plain ``NAME`` (typer would print ``{name}`` in the usage line and ``NAME <str>`` in the list).
"""

from __future__ import annotations

from typing import Any

#: command path → example command lines (each shown as is under "Examples:")
EXAMPLES: dict[str, tuple[str, ...]] = {
    "": ("es-doctor lab up && es-doctor -t lab diagnose", "es-doctor -t staging diagnose --class vectors",
         "es-doctor fix vectors.dimensions --dry-run", "es-doctor COMMAND --help"),
    "diagnose": ("es-doctor diagnose", "es-doctor -t staging diagnose --class vectors --class performance",
                 "es-doctor diagnose --check performance.latency --detailed",
                 "es-doctor diagnose --all-targets --format json",
                 "es-doctor diagnose -f prometheus -o /var/lib/node_exporter/textfile/es_doctor.prom",
                 "es-doctor diagnose -f nagios      # exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN",
                 "es-doctor diagnose --watch 1m30s"),
    "checks": ("es-doctor checks", "es-doctor checks --class vectors"),
    "alert-rules": ("es-doctor alert-rules > /etc/prometheus/rules/es-doctor.yml",
                    "es-doctor alert-rules --runbook-base-url https://git.example.com/ops/es-doctor/-/blob/main/runbooks",
                    "es-doctor -t prod alert-rules --target-label prod   # each alert names its target",
                    "es-doctor alert-rules --serve   # over the series of es-doctor serve"),
    "fix": ("es-doctor fix vectors.dimensions --dry-run      # the cure of a finding, planned only",
            "es-doctor fix dependency-restart -p component=postgres",
            "es-doctor -t staging fix --all --yes"),
    "escalate": ('es-doctor escalate --level 2 --issue "startup.docker-engine: engine down" --severity high',
                 "es-doctor escalate --resolve INC-20261129-031500-1a2b"),
    "serve": ("es-doctor serve --all-targets --interval 30s",
              "es-doctor -t production serve --listen 127.0.0.1:9109",
              "es-doctor serve --all-targets --print-scrape-config",
              "es-doctor serve --all-targets --print-alertmanager-config > alertmanager-es-doctor.yml"),
    "requests": ("es-doctor requests list", "es-doctor requests approve r-0123456789abcdef --by alice",
                 "es-doctor requests show r-0123456789abcdef"),
    "requests list": ("es-doctor requests list", "es-doctor requests list --format json",
                      "es-doctor requests list --server http://10.0.0.5:9109"),
    "requests show": ("es-doctor requests show r-0123456789abcdef",),
    "requests approve": ("es-doctor requests approve r-0123456789abcdef --by alice",
                         "es-doctor requests approve r-0123456789abcdef --server http://10.0.0.5:9109"),
    "requests deny": ("es-doctor requests deny r-0123456789abcdef --by alice",),
    "config": ("es-doctor config init", "es-doctor -t staging config show"),
    "config show": ("es-doctor config show", "es-doctor -c es-doctor.yaml config show --all"),
    "config init": ("es-doctor config init", "es-doctor config init ~/.config/es-doctor/es-doctor.yaml --force"),
    "lab": ("es-doctor lab up", "es-doctor lab fault add slow-api-crit && es-doctor -t lab diagnose",
            "es-doctor lab down --volumes"),
    "lab up": ("es-doctor lab up", "es-doctor lab up --mode process --no-prometheus",
               "es-doctor lab up --start-dockerd", "ES_DOCTOR_LAB_DIR=/tmp/lab2 es-doctor lab up --api-port 18080"),
    "lab down": ("es-doctor lab down", "es-doctor lab down --volumes"),
    "lab status": ("es-doctor lab status",),
    "lab restart": ("es-doctor lab restart email-sender-go", "es-doctor lab restart qdrant"),
    "lab faults": ("es-doctor lab faults",),
    "lab fault": ("es-doctor lab fault add manager-down", "es-doctor lab fault clear"),
    "lab fault add": ("es-doctor lab fault add slow-api-crit", "es-doctor lab fault add qdrant-down"),
    "lab fault clear": ("es-doctor lab fault clear slow-api-crit", "es-doctor lab fault clear"),
    "runbooks": ("es-doctor runbooks list", "es-doctor runbooks show event-bus-purge"),
    "runbooks list": ("es-doctor runbooks list",),
    "runbooks show": ("es-doctor runbooks show qdrant-dimension-fix",),
    "runbooks validate": ("es-doctor runbooks validate", "es-doctor runbooks validate ./my-runbooks/"),
    "runbooks schema": ("es-doctor runbooks schema > runbook.schema.json",),
    "emergency": ("es-doctor emergency status", "es-doctor emergency readonly", "es-doctor emergency backup"),
    "emergency status": ("es-doctor -t production emergency status",),
    "emergency readonly": ("es-doctor emergency readonly", "es-doctor emergency readonly --off"),
    "emergency maintenance": ("es-doctor emergency maintenance enable", "es-doctor emergency maintenance disable"),
    "emergency restart": ("es-doctor emergency restart", "es-doctor emergency restart --rollback-on-failure"),
    "emergency security": ("es-doctor emergency security --threshold 20 --webhook env:SECURITY_WEBHOOK",),
    "emergency rollback": ("es-doctor emergency rollback", "es-doctor emergency rollback --to v1.4.2"),
    "emergency backup": ("es-doctor emergency backup", "es-doctor emergency backup --live --reason 'before upgrade'"),
    "emergency validate": ("es-doctor emergency validate", "es-doctor emergency validate latest"),
    "profile cpu": ("es-doctor profile cpu --seconds 10", "es-doctor -t staging profile cpu --format json"),
    "profile heap": ("es-doctor profile heap", "es-doctor profile heap --compare last  # what grew"),
    "profile goroutine": ("es-doctor profile goroutine", "es-doctor profile goroutine --compare last --format json"),
    "profile list": ("es-doctor profile list", "es-doctor profile list --all-targets --format json"),
    "emergency restore": ("es-doctor emergency restore latest --dry-run",
                          "es-doctor emergency restore 20261129T031500Z --yes"),
}


#: the page of the documentation site (``docs/``, built by ``bash scripts/docs.sh``) that explains a command,
#: by its first word; a subcommand links its group's page. ``tests/unit/test_help_text.py`` checks each exists.
DOCS: dict[str, str] = {
    "diagnose": "docs/getting-started/reading.md",
    "checks": "docs/reference/checks.md",
    "alert-rules": "docs/integrations/alert-rules.md",
    "fix": "docs/howto/fix.md",
    "escalate": "docs/howto/emergencies.md",
    "serve": "docs/integrations/serve.md",
    "requests": "docs/integrations/alertmanager.md",
    "dashboard": "docs/integrations/grafana.md",
    "logs": "docs/howto/logs.md",
    "load": "docs/howto/load.md",
    "config": "docs/getting-started/configuration.md",
    "lab": "docs/lab.md",
    "runbooks": "docs/reference/runbooks.md",
    "emergency": "docs/howto/emergencies.md",
    "profile": "docs/howto/profile.md",
}


def docs_page(path: str) -> str | None:
    """The documentation page of a command path (``"emergency restore"`` → the emergencies page)."""
    return DOCS.get(path.split(" ", 1)[0]) if path else None


def epilog(path: str) -> str | None:
    """The "Examples:" epilog of a command (click keeps a paragraph opened by ``\\b`` as it is), and the
    documentation page that explains it."""
    lines = list(EXAMPLES.get(path, ()))
    page = docs_page(path)
    if not lines and page is None:
        return None
    parts = []
    if lines:
        parts.append("\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines))
    if path == "lab fault add":
        parts.append(_faults())
    if page is not None:
        parts.append(f"Docs: {page} (site: bash scripts/docs.sh)")
    return "\n\n".join(parts)


def _with_faults_when_shown(command: Any) -> None:
    """``lab fault add``'s epilog gets the fault table when its help is formatted, not at every start
    (the table is the lab's, ~10 ms to import)."""
    format_epilog = command.format_epilog

    def with_faults(ctx: Any, formatter: Any) -> None:
        command.epilog = epilog("lab fault add")
        format_epilog(ctx, formatter)

    command.format_epilog = with_faults


def _faults() -> str:
    from es_doctor.lab.fault_table import TABLE

    width = max(len(spec.name) for spec in TABLE)
    return "\b\nFaults (es-doctor lab faults: the checks each trips, its cure):\n" + "\n".join(
        f"  {spec.name:<{width}}  {spec.description}" for spec in TABLE)


def first_paragraph(text: str | None) -> str:
    """A command's whole first paragraph, on one line (the group's command list wraps it)."""
    paragraph = (text or "").strip().split("\n\n", 1)[0]
    return " ".join(paragraph.split())


def polish(command: Any, path: str = "") -> Any:
    """Finish the help of ``command`` and of every command under it; returns ``command``."""
    if path == "lab fault add":
        _with_faults_when_shown(command)
    text = None if path == "lab fault add" else epilog(path)
    if text is not None and command.epilog and path not in EXAMPLES:  # the command's own examples stay
        page = docs_page(path)
        text = command.epilog.rstrip() + (f"\n\nDocs: {page} (site: bash scripts/docs.sh)" if page else "")
    if text is not None:
        command.epilog = text
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") == "argument":
            _plain_argument(param)
        elif getattr(param, "min", None) is not None or getattr(param, "max", None) is not None:
            _range_in_words(param)
    for name, sub in getattr(command, "commands", {}).items():
        if not sub.short_help:
            sub.short_help = first_paragraph(sub.help)
        polish(sub, f"{path} {name}".strip())
    return command


def _range_in_words(param: Any) -> None:
    """A number's bounds in the option's help, in words ("1 to 3"), instead of click's ``[1<=x<=3]``."""
    low, high = param.min, param.max
    words = (f"{low:g} to {high:g}" if low is not None and high is not None
             else f"at least {low:g}" if low is not None else f"at most {high:g}")
    if words not in (param.help or ""):
        param.help = f"{(param.help or '').rstrip()} ({words})".strip()
    setattr(param, "_get_number_range_help_str", lambda: "")  # noqa: B010 - an instance's own method


def _plain_argument(param: Any) -> None:
    """``NAME`` in the usage line (``[NAME]`` when optional, ``NAME...`` for several), ``NAME`` alone in the
    list: no ``{name}``, no ``[[NAME]]``, no ``<str>``."""
    name = param.metavar.strip("[]{}").rstrip(".") if param.metavar else (param.name or "arg").upper()
    param.metavar = name
    usage = name if param.required else f"[{name}]"
    if param.nargs != 1:
        usage += "..."
    setattr(param, "get_usage_pieces", lambda ctx: [usage])  # noqa: B010 - an instance's own method
    setattr(param, "display_type_rich", lambda ctx: None)  # noqa: B010
