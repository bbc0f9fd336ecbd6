"""The lab: stand-in programs for the EMAIL_SENDER_1 Go Native stack, with runtime fault injection.

- ``python -m es_doctor.lab.service --config PATH``: the Go service's stand-in (API, metrics, pprof,
  JSON logs, event bus, self-generated traffic, vector operations against Qdrant over HTTP).
- ``python -m es_doctor.lab.qdrant_server --port P --storage DIR``: a Qdrant REST subset backed by
  qdrant-client's embedded mode (with snapshots).
- ``python -m es_doctor.lab.squatter --port P``: holds a port (the "port already in use" fault).

Runtime faults are named in a JSON file ``{"faults": [...]}`` that the programs poll
(see :mod:`es_doctor.lab.runtime_faults`).
"""
