"""The security procedure: ``security.analyze``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from es_doctor.files import PRIVATE_FILE, write_atomically
from es_doctor.runbooks.actions.base import (
    ActionContext,
    Inputs,
    action,
    unwrap,
)

IP_PATTERN = r"\b(?:\d{1,3}\.){3}\d{1,3}\b|\b[0-9a-fA-F:]*:[0-9a-fA-F:]+\b"


class AnalyzeInputs(Inputs):
    max_lines: int = Field(default=20000, gt=0, le=1_000_000, description="log lines read from the end")
    threshold: int = Field(default=5, gt=0, description="failed authentications that put an address on the "
                           "block list")
    allow: list[str] = Field(default_factory=lambda: ["127.0.0.1", "::1"],
                             description="addresses never put on the block list")


@action("security.analyze",
        lambda i: f"analyse SECURITY lines of the service log; block addresses with >= {i.get('threshold', 5)} "
                  "failed authentications (block list written, not applied)", AnalyzeInputs)
def security_analyze(inputs: AnalyzeInputs, ctx: ActionContext) -> dict[str, Any]:
    """The guide's `grep SECURITY logs/email-sender.log`, then top talkers and failed auth per address."""
    import collections
    import ipaddress
    import re

    from es_doctor.probes.logs import tail_lines

    log = Path(ctx.target.service.log_dir).expanduser() / ctx.target.service.main_log
    lines = unwrap(tail_lines(log, inputs.max_lines), f"log {log}")
    security = [line for line in lines if line.contains("SECURITY")]
    talkers: collections.Counter[str] = collections.Counter()
    failed: collections.Counter[str] = collections.Counter()
    for line in security:
        address = line.field("client_ip") or next(iter(re.findall(IP_PATTERN, line.raw)), "")
        try:
            ip = str(ipaddress.ip_address(address))
        except ValueError:
            continue
        talkers[ip] += 1
        if re.search(r"auth(entication)? failed|unauthori[sz]ed|invalid (token|credentials)|401", line.raw, re.I):
            failed[ip] += 1
    keep = set(inputs.allow)
    threshold = inputs.threshold
    blocked = sorted(ip for ip, n in failed.items() if n >= threshold and ip not in keep)
    blocklist = ctx.work_dir / "blocklist.nginx.conf"
    # the addresses of an attack are the operator's business only: 0600, like every file of the run
    write_atomically(blocklist, "# es-doctor emergency security: addresses with repeated failed authentication\n"
                     "# include it in nginx's server block, then reload nginx (not applied by es-doctor)\n"
                     + "".join(f"deny {ip};  # {failed[ip]} failed authentications\n" for ip in blocked),
                     PRIVATE_FILE, keep_mode=False)
    plain = ctx.work_dir / "blocklist.txt"
    write_atomically(plain, "".join(f"{ip}\n" for ip in blocked), PRIVATE_FILE, keep_mode=False)
    top = talkers.most_common(10)
    ctx.say("SECURITY lines: " + str(len(security)) + "; top talkers: "
            + ", ".join(f"{ip} ({n})" for ip, n in top))
    return {"security_lines": len(security), "top_talkers": [{"ip": ip, "lines": n} for ip, n in top],
            "failed_auth": dict(failed.most_common(20)), "blocked": blocked, "blocklist": str(blocklist),
            "blocklist_plain": str(plain)}
