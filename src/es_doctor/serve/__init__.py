"""``es-doctor serve``: every target diagnosed on its own schedule, kept in SQLite, exposed to Prometheus
(``/metrics``), to people (``/``, a status page) and to programs (``/api/v1``).

``scheduler`` (one thread per target, jittered, never overlapping itself) calls
:func:`es_doctor.runner.diagnose`; ``daemon`` keeps the latest reports, writes them and their status
changes to ``store`` and samples the dashboard ``widgets``; ``http`` serves them (``exposition`` for
/metrics, ``page`` for /). Read-only: nothing here changes the stack.
"""
