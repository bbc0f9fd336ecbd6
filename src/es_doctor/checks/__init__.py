"""Diagnostics of the guide, one module per symptom class; see :mod:`es_doctor.checks.registry`."""
