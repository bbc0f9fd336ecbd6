"""The metrics window's first scrape when es-doctor does not want to wait for it.

Rates and percentiles come from two scrapes of the service at least ``thresholds.scrape_window_s``
apart. The first one can be one already taken:

1. Prometheus' latest scrape of the service that old (see ``CheckContext._prometheus_before``);
2. else the last scrape of the previous run (``<state_dir>/scrapes/<key>.json``, 0600 in a 0700
   directory, one file per target and metrics URL), when it is at most :data:`MAX_REUSE_AGE_S` old
   and from the same process life: the process start time (``process_start_time_seconds``) is the
   same and no counter went back. When it is younger than the window, es-doctor waits only what is
   left of the window;
3. else es-doctor scrapes twice, ``scrape_window_s`` apart.

A fix's verification gives a time (``window_after``: when its steps ended) that the first scrape must not
precede: 1. and 2. are used only when taken after it, else es-doctor scrapes twice (what the service did
before the cure, such as events dropped before a purge, is not the cure's result).

Every run saves its latest scrape for the next one. The file holds the parsed samples (metric
names, labels, values), never a secret of the target; a missing, unreadable, oversized or
malformed file is ignored (the run scrapes twice), and a state dir that cannot be written only
means the next run scrapes twice too.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from es_doctor.probes.metrics import Sample, Scrape, counters_went_back, plausible

#: how old the previous run's scrape may be to start a window (older: the window would say little about now)
MAX_REUSE_AGE_S = 60.0
#: the largest state file read back (a service with a huge exposition is simply not cached beyond it)
MAX_FILE_BYTES = 4 * 1024 * 1024
#: how far the process start times of two scrapes may differ and still be one process life
START_TOLERANCE_S = 0.5
FORMAT = 1

#: what the evidence says about the window's first scrape
FROM_PROMETHEUS = "Prometheus' scrape and one now"
FROM_PREVIOUS_RUN = "the previous run's scrape and one now"
FROM_TWO_SCRAPES = "two scrapes"


def process_start(scrape: Scrape, metric: str) -> float | None:
    """The process start time a scrape exposes (``process_start_time_seconds``), if any."""
    return scrape.total(metric)


def same_life(before: Scrape, after: Scrape, start_metric: str) -> bool:
    """Whether two scrapes come from one process life: the same start time (when either exposes one)
    and no counter went back."""
    start_before, start_after = process_start(before, start_metric), process_start(after, start_metric)
    if (start_before is None) != (start_after is None):
        return False
    if start_before is not None and start_after is not None and abs(start_before - start_after) > START_TOLERANCE_S:
        return False
    return not counters_went_back(before, after)


def wait_before_reuse(saved: Scrape | None, now: float, window_s: float,
                      max_age_s: float = MAX_REUSE_AGE_S) -> float | None:
    """Seconds to wait before a scrape taken then makes a window with ``saved``: 0 when it is already
    ``window_s`` old, what is left otherwise; None when there is no saved scrape, it is older than
    ``max_age_s``, or it is from the future (a clock that moved back)."""
    if saved is None:
        return None
    age = now - saved.taken_at
    if age < 0 or age > max_age_s:
        return None
    return max(0.0, window_s - age)


def reusable(saved: Scrape, now_scrape: Scrape, window_s: float, start_metric: str,
             max_age_s: float = MAX_REUSE_AGE_S) -> bool:
    """Whether ``saved`` can be the first scrape of a window ending with ``now_scrape``."""
    age = now_scrape.taken_at - saved.taken_at
    return window_s <= age <= max_age_s + window_s and same_life(saved, now_scrape, start_metric)


@dataclass(frozen=True)
class ScrapeStore:
    """The latest scrape of one target's metrics URL, kept for the next run."""

    directory: Path
    target_name: str
    metrics_url: str

    @property
    def path(self) -> Path:
        key = hashlib.sha256(f"{self.target_name}\0{self.metrics_url}".encode()).hexdigest()[:24]
        return self.directory / f"{key}.json"

    def load(self) -> Scrape | None:
        """The saved scrape, or None (absent, not a regular file, too large, malformed, another URL)."""
        from es_doctor.files import RefusedFileError, read_regular_file

        try:
            raw = read_regular_file(self.path, MAX_FILE_BYTES, follow_links=False)
        except RefusedFileError:
            return None
        return decode(raw, self.target_name, self.metrics_url)

    def save(self, scrape: Scrape) -> bool:
        """Write ``scrape`` for the next run (0600, in a 0700 directory, replaced atomically); False
        when it cannot be written (the next run then scrapes twice)."""
        from es_doctor.files import create_private, private_dir

        data = encode(scrape, self.target_name, self.metrics_url)
        if len(data) > MAX_FILE_BYTES:
            return False
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            private_dir(self.directory)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            with os.fdopen(create_private(tmp), "wb") as out:
                out.write(data)
            tmp.replace(self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return False
        return True


def encode(scrape: Scrape, target_name: str, metrics_url: str) -> bytes:
    samples = [[s.name, [list(pair) for pair in s.labels], s.value]
               for series in scrape.samples.values() for s in series]
    return json.dumps({"format": FORMAT, "target": target_name, "metrics_url": metrics_url,
                       "taken_at": scrape.taken_at, "samples": samples}, separators=(",", ":")).encode()


def decode(raw: bytes, target_name: str, metrics_url: str) -> Scrape | None:
    """A scrape from a state file's bytes; None when it is not one es-doctor wrote for this URL."""
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("target") != target_name \
                or doc.get("metrics_url") != metrics_url:
            return None
        taken_at = float(doc["taken_at"])
        if not math.isfinite(taken_at):
            return None
        scrape = Scrape(taken_at=taken_at)
        for name, labels, value in doc["samples"]:
            pairs = tuple(sorted((str(k), str(v)) for k, v in labels))
            if isinstance(name, str) and isinstance(value, int | float) and plausible(name, float(value)):
                scrape.samples.setdefault(name, []).append(Sample(name, pairs, float(value)))
        return scrape
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
