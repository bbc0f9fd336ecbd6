"""``es-doctor load``: the guide's "Tests de Charge" as a bounded, open-model load test.

``plan`` (scenarios, the fixed-rate schedule, the caps), ``stats`` (what each request did, percentiles,
lateness, the grade against the guide's thresholds), ``render`` (table, JSON, the live progress line),
``run`` (the safety checks, the run, the removal of the test data). The HTTP engine is
``es_doctor.probes.load`` (the only part that imports httpx).
"""
