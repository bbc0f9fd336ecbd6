"""Regenerate docs/diagnose-table.svg: the table report of ``es-doctor diagnose`` on the lab with one
fault, as an operator's terminal shows it (colours and all), exported by rich.

    .venv/bin/python scripts/readme_svg.py [--fault slow-api-crit] [--out docs/diagnose-table.svg]

Starts a lab of its own (process mode, in a temporary directory, stopped and removed afterwards) unless
``--lab-dir`` names a running one, injects the fault, diagnoses, and writes the SVG.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _es_doctor(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "-m", "es_doctor", *args], check=True, env=env, timeout=300,
                   stdout=subprocess.DEVNULL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault", default="slow-api-crit", help="the lab fault to show (es-doctor lab faults)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "diagnose-table.svg")
    parser.add_argument("--lab-dir", type=Path, help="a running lab to use (default: a new one, removed after)")
    parser.add_argument("--settle", type=float, default=4.0, help="seconds between the fault and the diagnosis")
    args = parser.parse_args()

    own = args.lab_dir is None
    lab_dir = args.lab_dir or Path(tempfile.mkdtemp(prefix="es-doctor-svg-"))
    env = {**os.environ, "ES_DOCTOR_LAB_DIR": str(lab_dir), "ES_DOCTOR_STATE_DIR": str(lab_dir / "state")}
    os.environ.update({k: env[k] for k in ("ES_DOCTOR_LAB_DIR", "ES_DOCTOR_STATE_DIR")})
    try:
        if own:
            _es_doctor("lab", "up", "--mode", "process", env=env)
        _es_doctor("lab", "fault", "add", args.fault, env=env)
        time.sleep(args.settle)
        from rich.console import Console

        from es_doctor.config import load_config
        from es_doctor.findings import sanitize_report
        from es_doctor.render.table import render_rich
        from es_doctor.runner import diagnose

        loaded = load_config(None, "lab")
        report = diagnose(loaded.target, "lab")
        console = Console(record=True, width=120, force_terminal=True, color_system="truecolor",
                          file=Path(os.devnull).open("w", encoding="utf-8"))  # noqa: SIM115 - recorded, not shown
        console.print(f"$ es-doctor -t lab diagnose        # lab fault: {args.fault}", style="bold")
        render_rich(console, sanitize_report(report))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        console.save_svg(str(args.out), title="es-doctor -t lab diagnose")
        print(f"wrote {args.out} ({report.status.value}, exit {int(report.exit_status())})")
    finally:
        if own:
            _es_doctor("lab", "down", "--volumes", env=env)
            shutil.rmtree(lab_dir, ignore_errors=True)
        else:
            _es_doctor("lab", "fault", "clear", args.fault, env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
