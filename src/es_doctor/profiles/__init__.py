"""Go pprof profiles: the protobuf reader (:mod:`.proto`), summaries and comparisons (:mod:`.summary`) and
the saved profiles under the state dir (:mod:`.store`). Pure Python, no SDK: ``es-doctor profile`` fetches
through :mod:`es_doctor.probes.pprof`."""
