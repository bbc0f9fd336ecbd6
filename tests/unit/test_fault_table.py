"""The lab's one fault table agrees with the lab programs, the checks and the cure table."""

from __future__ import annotations

from es_doctor import cures
from es_doctor.checks.registry import load_all
from es_doctor.lab import api, faults, pprofd, qdrant_server, service, vectors
from es_doctor.lab.fault_table import FAULT_SPECS, PROGRAM_FAULTS, RUNTIME_FAULTS, TABLE
from es_doctor.runbooks.loader import load_runbooks


def test_every_runtime_fault_is_acted_on_by_its_program() -> None:
    by_program = {"service": service.FAULTS | api.FAULTS | vectors.FAULTS, "qdrant": qdrant_server.FAULTS,
                  "pprofd": pprofd.FAULTS}
    assert frozenset().union(*by_program.values()) == PROGRAM_FAULTS and RUNTIME_FAULTS <= PROGRAM_FAULTS
    for spec in TABLE:
        if spec.program is not None:
            assert spec.name in by_program[spec.program], spec.name


def test_the_go_program_reads_the_faults_the_table_gives_it() -> None:
    """pprofd.go names each of its faults as a string constant (Go cannot import the table)."""
    source = pprofd.source().decode()
    for name in pprofd.FAULTS:
        assert f'= "{name}"' in source, name


def test_every_fault_can_be_injected_and_cleared() -> None:
    assert list(faults.FAULTS) == [spec.name for spec in TABLE]
    for name, fault in faults.FAULTS.items():
        assert fault.spec is FAULT_SPECS[name] and fault.description and callable(fault.apply)


def test_trips_name_real_checks_and_cures_name_the_runbook_the_cure_table_gives() -> None:
    checks = load_all()
    runbooks = load_runbooks([]).runbooks
    for spec in TABLE:
        for check_id, status in {**spec.trips, **dict.fromkeys(spec.also, "WARN")}.items():
            assert check_id in checks, f"{spec.name}: unknown check {check_id}"
            assert status in ("WARN", "CRIT", "SKIP"), spec.name
        if spec.cure is not None:
            runbook, params = spec.cure
            assert runbook in runbooks, spec.name
            assert spec.cure_finding in spec.trips, spec.name
            assert runbook in cures.runbooks_curing(spec.cure_finding or ""), (
                f"{spec.name}: es_doctor.cures never sends {spec.cure_finding} to {runbook}")
            for key in params:
                assert key in runbooks[runbook].params, f"{spec.name}: {runbook} has no parameter {key}"
