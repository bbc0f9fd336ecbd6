"""Remediation from alerts: Alertmanager's webhook (``alerts``), the policy that decides what an alert may
start (``policy``), and the worker that checks, runs, verifies and tells (``worker``, in ``es-doctor serve``)."""
