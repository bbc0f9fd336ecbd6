"""Docker SDK calls a cancelled step can stop (issue 24 item 9).

The SDK's calls block in a socket read (``docker stop`` waiting for the container, an ``exec`` that runs
a long program, an archive being streamed): bounded by their timeouts, but deaf to a step's cancel
event, so a step stuck in one was reported "could not be stopped" and its rollback was never started.

Over a Unix socket (the usual engine address), the client's connection pool is replaced by one that
knows which connection each thread has checked out; while a step's SDK call runs, a watcher waits on
the step's cancel event and, when it is set, shuts that thread's connection down: the blocked read ends
at once, the SDK raises, and the step stops. What the engine was doing for the call goes on there (a
``docker stop`` still stops the container, an exec'd program runs to its end): es-doctor stops waiting
for it, which is what lets the rollback start, and the plan's next reading sees the engine's real state.
Over tcp (plain or TLS), requests' adapter is kept and its pool manager makes the same tracking pools.
Over ssh the SDK's own pools are kept: those calls stay bounded by their timeouts only.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

#: how often the watcher looks whether the call ended (it wakes at once on the cancel)
POLL_S = 0.25


def _tracking(pool_class: type[Any]) -> type[Any]:
    """A subclass of the urllib3 connection pool ``pool_class`` that records the connection each thread has
    checked out (what :func:`_shut_down_for` shuts down)."""

    class TrackingPool(pool_class):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.in_use: dict[int, Any] = {}
            self.in_use_lock = threading.Lock()

        def _get_conn(self, timeout: float | None = None) -> Any:
            conn = super()._get_conn(timeout)
            with self.in_use_lock:
                self.in_use[threading.get_ident()] = conn
            return conn

        def _put_conn(self, conn: Any) -> None:
            with self.in_use_lock:
                for ident in [i for i, c in self.in_use.items() if c is conn]:
                    del self.in_use[ident]
            super()._put_conn(conn)

    TrackingPool.__name__ = f"Tracking{pool_class.__name__}"
    return TrackingPool


def track_connections(client: Any) -> bool:
    """Make the connection pools of the SDK ``client`` record the connection each thread uses: the Unix-socket
    adapter is replaced by a tracking one; an engine over tcp (plain or TLS) keeps requests' adapters, whose
    pool manager makes tracking pools from now on. False when neither is there (ssh: nothing is changed)."""
    from docker.transport.unixconn import UnixHTTPAdapter, UnixHTTPConnectionPool
    from requests.adapters import HTTPAdapter
    from urllib3 import HTTPConnectionPool, HTTPSConnectionPool

    api = client.api
    old = getattr(api, "_custom_adapter", None)
    if isinstance(old, UnixHTTPAdapter):
        unix_pool = _tracking(UnixHTTPConnectionPool)

        class TrackingAdapter(UnixHTTPAdapter):  # type: ignore[misc]
            def get_connection(self, url: str, proxies: Any = None) -> Any:
                with self.pools.lock:
                    pool = self.pools.get(url)
                    if pool:
                        return pool
                    pool = unix_pool(url, self.socket_path, self.timeout, maxsize=self.max_pool_size)
                    self.pools[url] = pool
                return pool

        adapter = TrackingAdapter("http+unix://" + old.socket_path, old.timeout, max_pool_size=old.max_pool_size)
        api.mount("http+docker://", adapter)
        api._custom_adapter = adapter
        with contextlib.suppress(Exception):  # its pools hold nothing yet that matters
            old.close()
        return True
    base = str(getattr(api, "base_url", ""))
    if not base.startswith(("http://", "https://")):
        return False
    adapter = api.get_adapter(base)
    manager = getattr(adapter, "poolmanager", None)
    if not isinstance(adapter, HTTPAdapter) or manager is None:
        return False
    manager.pool_classes_by_scheme = {"http": _tracking(HTTPConnectionPool), "https": _tracking(HTTPSConnectionPool)}
    manager.clear()  # the pools made so far (the ping's) are not tracking ones
    return True


def _pools(client: Any) -> list[Any]:
    """Every connection pool of the SDK ``client`` (the Unix adapter's, and requests' pool managers')."""
    containers = []
    for adapter in {id(a): a for a in (getattr(client.api, "_custom_adapter", None),
                                         *client.api.adapters.values())}.values():
        if adapter is None:
            continue
        pools = getattr(adapter, "pools", None)  # the Unix adapter
        manager = getattr(adapter, "poolmanager", None)
        for found in (pools, getattr(manager, "pools", None)):
            if found is not None and hasattr(found, "lock"):
                containers.append(found)
    every = []
    for pools in containers:
        with pools.lock:
            every += [pools[key] for key in pools.keys()]  # noqa: SIM118 - RecentlyUsedContainer has no iteration
    return every


def _shut_down_for(client: Any, ident: int) -> int:
    """Shut down the connection(s) thread ``ident`` has checked out of ``client``'s pools; how many."""
    done = 0
    for pool in _pools(client):
        lock = getattr(pool, "in_use_lock", None)
        if lock is None:
            continue
        with lock:
            conn = pool.in_use.get(ident)
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                done += 1
    return done


@contextlib.contextmanager
def stop_on_cancel(client: Any, cancel: threading.Event | None) -> Iterator[threading.Event]:
    """While the block runs an SDK call in this thread, a watcher shuts the call's connection down as soon
    as ``cancel`` is set. Yields an event that is set when the watcher did (the call was cancelled)."""
    fired = threading.Event()
    if cancel is None:
        yield fired
        return
    ident = threading.get_ident()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if cancel.wait(POLL_S):
                while not done.is_set():  # until the call notices (a connection checked out later too)
                    if _shut_down_for(client, ident):
                        fired.set()
                    done.wait(POLL_S)
                return

    watcher = threading.Thread(target=watch, name="docker:cancel-watch", daemon=True)
    watcher.start()
    try:
        yield fired
    finally:
        done.set()
        watcher.join(timeout=POLL_S * 4)
