"""Probes: the only modules that talk to real systems (and import their SDKs).

A probe never raises to its caller: refusals, timeouts, 404s and bad JSON become a
:class:`~es_doctor.probes.result.Failure` inside a :class:`~es_doctor.probes.result.Result`.
Heavy SDKs (docker, psycopg, qdrant_client) are imported inside the probe that needs them.
"""
