"""The load test's HTTP engine (httpx, asyncio): requests sent at fixed times, under a concurrency cap.

Request *i* is due at ``start + i / rps``. The dispatcher sleeps until then, takes one of
``concurrency`` slots (waiting for one if every slot is busy: the request is then late, and the wait
counts in its latency) and starts it. Latency is measured from the due time to the end of the answer's
body. Every request is bounded: one total deadline (``timeout_s``, from its start; asyncio cancels the
socket read at once), a body read up to 64 KiB, undecoded (``Accept-Encoding: identity``: no
decompression bomb can be sent). The stop event (Ctrl-C) is looked at every 50 ms: the dispatcher stops,
requests in flight are cancelled and counted as such, and what completed is the partial result. A
request that still finds no free connection ``timeout_s`` after the planned end is *dropped* (an error:
the service could not take it), with every request after it, so a run lasts at most duration + 2 ×
timeout however slow the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Callable, Iterator

import httpx

from es_doctor.load.plan import WORDS, Op, Plan, operations
from es_doctor.load.stats import Recorder
from es_doctor.probes.http import _proxy_for

MAX_BODY = 64 * 1024
STOP_POLL_S = 0.05
LEAD_S = 0.05  #: the first request is due this long after the client is ready


class _TooLargeError(Exception):
    pass


def _ops(plan: Plan) -> Iterator[tuple[int, Op]]:
    chunk = 4096  # the mix is periodic: generate it a chunk at a time, never the whole run at once
    index = 0
    while index < plan.total:
        for op in operations(plan.scenario, min(chunk, plan.total - index)):
            yield index, op
            index += 1


def _request(client: httpx.AsyncClient, plan: Plan, index: int, op: Op) -> httpx.Request:
    if op is Op.CREATE:
        return client.build_request("POST", op.path, json={"title": plan.title(index)})
    if op is Op.SEARCH:
        query = f"{WORDS[index % len(WORDS)]} {WORDS[(index // len(WORDS)) % len(WORDS)]}"
        return client.build_request("GET", op.path, params={"q": query, "limit": "5"})
    return client.build_request(op.method, op.path)


async def _exchange(client: httpx.AsyncClient, request: httpx.Request) -> tuple[int, bytes]:
    response = await client.send(request, stream=True)
    try:
        body = bytearray()
        async for chunk in response.aiter_raw():
            body += chunk
            if len(body) > MAX_BODY:
                raise _TooLargeError
        encoded = response.headers.get("Content-Encoding", "identity").strip().lower() not in ("", "identity")
        return response.status_code, b"" if encoded else bytes(body)
    finally:
        await response.aclose()


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "refused"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
        return "cut"
    if isinstance(exc, _TooLargeError):
        return "too-large"
    return "error"


def _task_id(body: bytes) -> int | str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    value = data.get("id") if isinstance(data, dict) else None
    return value if isinstance(value, int | str) and not isinstance(value, bool) else None


class Engine:
    def __init__(self, plan: Plan, base_url: str, headers: dict[str, str], rec: Recorder,
                 stop: threading.Event) -> None:
        self.plan, self.base_url, self.headers, self.rec, self.stop = plan, base_url, headers, rec, stop
        self.in_flight: set[asyncio.Task[None]] = set()

    async def _one(self, client: httpx.AsyncClient, index: int, op: Op, due: float, slots: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            async with asyncio.timeout(self.plan.timeout_s):
                status, body = await _exchange(client, _request(client, self.plan, index, op))
            kind = str(status)
            if op is Op.CREATE and 200 <= status < 300:
                task_id = _task_id(body)
                if task_id is None:
                    self.rec.creates_unanswered += 1  # created, id unknown: the marker still finds it
                else:
                    self.rec.created_ids.append(task_id)
            now = loop.time()
            self.rec.done(op, kind, now - due, now - sent)
        except asyncio.CancelledError:
            self.rec.cancel()
            raise
        except (httpx.HTTPError, OSError, TimeoutError, _TooLargeError, ValueError) as exc:
            self.rec.done(op, _failure_kind(exc), None)
        finally:
            slots.release()

    async def _dispatch(self, client: httpx.AsyncClient, start: float) -> None:
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.plan.concurrency)
        # a request still waiting for a connection this long after the start is dropped, and so is every one
        # due after it: the run ends within duration + 2 × timeout, however slow the server
        hard_end = start + self.plan.duration_s + self.plan.timeout_s
        ops = _ops(self.plan)
        for index, op in ops:
            due = start + self.plan.due(index)
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            waited = slots.locked()
            try:
                if waited:
                    await asyncio.wait_for(slots.acquire(), max(0.0, hard_end - loop.time()))
                else:
                    await slots.acquire()
            except TimeoutError:
                self.rec.drop(op)
                for _index, later in ops:
                    self.rec.drop(later)
                return
            self.rec.sent(loop.time() - due, waited)
            task = asyncio.create_task(self._one(client, index, op, due, slots))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)

    async def run(self, on_tick: Callable[[float], None] | None, tick_s: float) -> None:
        loop = asyncio.get_running_loop()
        limits = httpx.Limits(max_connections=self.plan.concurrency, max_keepalive_connections=self.plan.concurrency)
        headers = {**self.headers, "Accept-Encoding": "identity", "User-Agent": f"es-doctor-load/{self.plan.run_id}"}
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, limits=limits, trust_env=False,
                                     timeout=httpx.Timeout(self.plan.timeout_s),
                                     proxy=_proxy_for(self.base_url)) as client:
            start = loop.time() + LEAD_S
            dispatcher = asyncio.create_task(self._dispatch(client, start))
            next_tick = loop.time()
            while not self.stop.is_set():
                if dispatcher.done() and not self.in_flight:
                    break
                await asyncio.sleep(STOP_POLL_S)
                self.rec.elapsed_s = max(0.0, loop.time() - start)
                if on_tick is not None and loop.time() >= next_tick:
                    next_tick = loop.time() + tick_s
                    on_tick(self.rec.elapsed_s)
            self.rec.interrupted = self.stop.is_set()
            for task in (dispatcher, *self.in_flight):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(dispatcher, *list(self.in_flight), return_exceptions=True)
            failure = None if dispatcher.cancelled() else dispatcher.exception()
            if failure is not None:
                raise failure
            self.rec.elapsed_s = max(0.0, loop.time() - start)


def run_load(plan: Plan, base_url: str, headers: dict[str, str], rec: Recorder, stop: threading.Event,
             on_tick: Callable[[float], None] | None = None, tick_s: float = 0.25) -> None:
    """Run the plan (blocking) until it ends or ``stop`` is set; ``rec`` holds what happened."""
    asyncio.run(Engine(plan, base_url, headers, rec, stop).run(on_tick, tick_s))
