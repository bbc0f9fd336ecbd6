"""Docker engine probe.

On a Unix socket (``unix://…``, or no host: ``$DOCKER_HOST``, else ``/var/run/docker.sock``), what
diagnose reads (version, a container's inspect and its image's tags, logs, memory stats, a file,
the volumes) goes over the Engine API with es-doctor's bounded HTTP layer: no docker SDK import
(docker, requests, urllib3: 50-70 ms of CPU) for a diagnosis. The docker SDK (imported lazily)
serves every other engine address (``tcp://``, ``ssh://``, TLS) and the runbooks' and backups'
actions."""

from __future__ import annotations

import contextlib
import io
import os
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from es_doctor.probes.result import Failure, FailureKind, Result, failed, guarded, short, success


@dataclass(frozen=True)
class ContainerInfo:
    name: str
    id: str
    state: str  #: running, exited, created, restarting, paused, dead
    exit_code: int
    restart_count: int
    oom_killed: bool
    error: str
    image: str  #: the image reference the container was created from (Config.Image)
    image_id: str
    image_tags: list[str]
    env: dict[str, str]
    labels: dict[str, str]
    health: str | None  #: healthy, unhealthy, starting, or None without a healthcheck
    started_at: str
    finished_at: str
    pid: int
    memory_limit: int

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class MemoryStats:
    usage: int
    limit: int


#: the largest decoded Engine API answer read (a log tail, a config file's archive, an inspect)
ENGINE_MAX_BODY = 16 * 1024 * 1024
DEFAULT_SOCKET = "unix:///var/run/docker.sock"


class NotFound(Exception):  # noqa: N818 - named like the SDK's, classified the same way
    """The engine answered 404 (no such container, file, image)."""

    status_code = 404


class APIError(Exception):
    """The engine answered another error status."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"{status_code} Server Error: {message}")
        self.status_code = status_code


@dataclass
class DockerProbe:
    host: str | None = None
    timeout: float = 10.0
    _client: Any = field(default=None, init=False, repr=False)
    _reader: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def _classify(self, exc: BaseException) -> Failure:
        name = type(exc).__name__
        if name in ("NotFound", "FileNotFoundError"):
            return Failure(FailureKind.NOT_FOUND, short(exc), 404)
        if name in ("ReadTimeout", "Timeout", "TimeoutError", "ConnectTimeout", "WriteTimeout", "PoolTimeout"):
            return Failure(FailureKind.TIMEOUT, f"docker engine did not answer: {short(exc)}")
        if name in ("DockerException", "ConnectionError", "ConnectionRefusedError", "ConnectError",
                    "RemoteProtocolError", "ReadError", "WriteError"):
            return Failure(FailureKind.REFUSED, f"docker engine unreachable ({self.host or 'DOCKER_HOST'}): "
                                                f"{short(exc)}")
        if name == "APIError":
            status = getattr(exc, "status_code", None)
            return Failure(FailureKind.HTTP_ERROR, short(exc), status)
        return Failure(FailureKind.ERROR, f"{name}: {short(exc)}")

    def client(self) -> Result[Any]:
        with self._lock:
            if self._client is not None:
                return success(self._client)

            def connect() -> Any:
                import docker

                if self.host:
                    client = docker.DockerClient(base_url=self.host, timeout=int(self.timeout))
                else:
                    client = docker.from_env(timeout=int(self.timeout))
                client.ping()
                from es_doctor.probes.docker_cancel import track_connections

                track_connections(client)  # a cancelled step's call can be stopped (docker_cancel)
                return client

            result: Result[Any] = guarded(self._classify, connect)
            if result.ok:
                self._client = result.value
            return result

    def _call(self, fn: Any) -> Result[Any]:
        """``fn(client)`` through the SDK; inside a runbook step, stopped when the step is cancelled
        (see :mod:`es_doctor.probes.docker_cancel`)."""
        client = self.client()
        if client.failure is not None:
            return client
        from es_doctor.probes.http import current_cancel

        cancel = current_cancel()
        if cancel is None:
            return guarded(self._classify, lambda: fn(client.value))
        from es_doctor.probes.docker_cancel import stop_on_cancel

        with stop_on_cancel(client.value, cancel) as fired:
            result: Result[Any] = guarded(self._classify, lambda: fn(client.value))
        if fired.is_set() and result.failure is not None:
            return failed(FailureKind.ERROR, "cancelled: the step was stopped during a docker engine call "
                                             "(the engine may finish what it was doing)")
        return result

    # ---- reads over the Engine API on a Unix socket (no SDK)
    def socket_path(self) -> str | None:
        """The engine's Unix socket, or None when it is reached otherwise (tcp, ssh: the SDK)."""
        host = self.host or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET
        return host[len("unix://"):] if host.startswith("unix://") else None

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                with contextlib.suppress(Exception):  # closing is best effort
                    self._reader.close()
                self._reader = None

    def _engine(self, path: str, params: dict[str, str] | None = None, *, raw: bool = False) -> Any:
        """GET ``path`` from the engine (raises like the SDK: NotFound, APIError, httpx's errors)."""
        with self._lock:
            if self._reader is None:
                from es_doctor.probes.http import bounded_client

                self._reader = bounded_client("http://docker", deadline_s=self.timeout, max_body=ENGINE_MAX_BODY,
                                              base_url=True, uds=self.socket_path())
            reader = self._reader
        response = reader.get(path, params=params)
        body = response.content
        if response.status_code >= 300:
            message = _engine_message(body)
            if response.status_code == 404:
                raise NotFound(message)
            raise APIError(response.status_code, message)
        if raw:
            return body
        from es_doctor.probes.http import parse_json

        return parse_json(body)

    def _read(self, fn: Any) -> Result[Any]:
        return guarded(self._classify, fn)

    def ping(self) -> Result[str]:
        if self.socket_path() is not None:
            return self._read(lambda: str(self._engine("/version").get("Version", "?")))
        return self._call(lambda c: c.version().get("Version", "?"))

    def container(self, name: str) -> Result[ContainerInfo]:
        if self.socket_path() is not None:
            return self._read(lambda: self._container_info(name, self._engine(f"/containers/{_q(name)}/json"),
                                                           self._image_tags))

        def get(c: Any) -> ContainerInfo:
            cont = c.containers.get(name)
            try:
                tags = list(cont.image.tags) if cont.image is not None else []
            except Exception:  # noqa: BLE001 - the image may be gone; tags are best effort
                tags = []
            return self._container_info(name, cont.attrs, lambda _image: tags)

        return self._call(get)

    def _image_tags(self, image_id: str) -> list[str]:
        try:
            return [str(t) for t in self._engine(f"/images/{_q(image_id)}/json").get("RepoTags") or []]
        except Exception:  # noqa: BLE001 - the image may be gone; tags are best effort
            return []

    @staticmethod
    def _container_info(name: str, attrs: dict[str, Any], tags_of: Any) -> ContainerInfo:
        state = attrs.get("State", {})
        conf = attrs.get("Config", {})
        env = {}
        for item in conf.get("Env") or []:
            key, _, value = item.partition("=")
            env[key] = value
        health = (state.get("Health") or {}).get("Status")
        image_id = str(attrs.get("ImageID") or attrs.get("Image") or "")
        tags = tags_of(image_id) if image_id else []
        return ContainerInfo(
            name=name,
            id=str(attrs.get("Id", "")),
            state=str(state.get("Status", "unknown")),
            exit_code=int(state.get("ExitCode", 0)),
            restart_count=int(attrs.get("RestartCount", 0)),
            oom_killed=bool(state.get("OOMKilled", False)),
            error=str(state.get("Error", "")),
            image=str(conf.get("Image", "")),
            image_id=str(attrs.get("Image", "")),
            image_tags=tags,
            env=env,
            labels=dict(conf.get("Labels") or {}),
            health=health,
            started_at=str(state.get("StartedAt", "")),
            finished_at=str(state.get("FinishedAt", "")),
            pid=int(state.get("Pid", 0)),
            memory_limit=int((attrs.get("HostConfig") or {}).get("Memory", 0) or 0),
        )

    def containers(self, labels: dict[str, str] | None = None, all_states: bool = True) -> Result[list[ContainerInfo]]:
        filters = {"label": [f"{k}={v}" for k, v in (labels or {}).items()]} if labels else None
        listed = self._call(lambda c: [x.name for x in c.containers.list(all=all_states, filters=filters)])
        if listed.failure is not None:
            return Result(failure=listed.failure)
        infos = []
        for name in listed.value or []:
            info = self.container(name)
            if info.ok:
                infos.append(info.unwrap())
        return success(infos)

    def logs(self, name: str, tail: int = 50) -> Result[str]:
        if self.socket_path() is not None:
            def read() -> str:
                tty = bool((self._engine(f"/containers/{_q(name)}/json").get("Config") or {}).get("Tty"))
                raw = self._engine(f"/containers/{_q(name)}/logs", {"stdout": "1", "stderr": "1",
                                                                    "tail": str(tail)}, raw=True)
                return (raw if tty else demultiplex(raw)).decode("utf-8", errors="replace")

            return self._read(read)
        return self._call(lambda c: c.containers.get(name).logs(tail=tail, stdout=True, stderr=True)
                          .decode("utf-8", errors="replace"))

    def log_stream(self, name: str, *, since: float | None = None, tail: int | None = None,
                   follow: bool = False) -> Result[LogStream]:
        """``docker logs --timestamps [--since] [--tail] [--follow]`` of a container as a stream of byte
        chunks (each line prefixed with the engine's RFC 3339 time). A log driver that cannot be read
        back (``none``, ``syslog``…) is an HTTP_ERROR with the engine's reason."""

        def open_stream(c: Any) -> LogStream:
            cont = c.containers.get(name)
            kwargs: dict[str, Any] = {"stream": True, "follow": follow, "timestamps": True,
                                      "stdout": True, "stderr": True, "tail": tail if tail is not None else "all"}
            if since is not None and since > 0:
                kwargs["since"] = since
            return LogStream(cont.logs(**kwargs), self._classify)

        return self._call(open_stream)

    def exec(self, name: str, argv: list[str], user: str = "") -> Result[ExecResult]:
        def run(c: Any) -> ExecResult:
            cont = c.containers.get(name)
            code, out = cont.exec_run(argv, user=user, demux=False)
            return ExecResult(int(code if code is not None else -1), (out or b"").decode("utf-8", errors="replace"))

        return self._call(run)

    def memory(self, name: str) -> Result[MemoryStats]:
        if self.socket_path() is not None:
            return self._read(lambda: _memory(self._engine(f"/containers/{_q(name)}/stats",
                                                           {"stream": "false", "one-shot": "true"})))

        def read(c: Any) -> MemoryStats:
            return _memory(c.containers.get(name).stats(stream=False, one_shot=True))

        return self._call(read)

    def read_file(self, name: str, path: str) -> Result[str]:
        """A file of a container, running or not (``docker cp``); missing is NOT_FOUND."""
        if self.socket_path() is not None:
            result = self._read(lambda: _tar_member(
                self._engine(f"/containers/{_q(name)}/archive", {"path": path}, raw=True), path))
        else:
            result = self._call(lambda c: _tar_member(b"".join(c.containers.get(name).get_archive(path)[0]), path))
        if result.failure is not None and result.failure.kind is FailureKind.NOT_FOUND:
            return failed(FailureKind.NOT_FOUND, f"{path} not found in container {name}: {result.failure.message}")
        return result

    def volumes(self) -> Result[list[str]]:
        if self.socket_path() is not None:
            return self._read(lambda: [str(v["Name"]) for v in self._engine("/volumes").get("Volumes") or []])
        return self._call(lambda c: [v.name for v in c.volumes.list()])

    def images(self) -> Result[list[str]]:
        return self._call(lambda c: sorted({t for img in c.images.list() for t in img.tags}))

    # ---- actions (used by runbooks): idempotent, never raise
    def restart(self, name: str, timeout: int = 5) -> Result[str]:
        return self._call(lambda c: (c.containers.get(name).restart(timeout=timeout), "restarted")[1])

    def start(self, name: str) -> Result[str]:
        def run(c: Any) -> str:
            cont = c.containers.get(name)
            if cont.status == "running":
                return "already running"
            cont.start()
            return "started"

        return self._call(run)

    def stop(self, name: str, timeout: int = 5) -> Result[str]:
        def run(c: Any) -> str:
            cont = c.containers.get(name)
            cont.reload()
            if cont.status != "running":
                return f"already {cont.status}"
            cont.stop(timeout=timeout)
            return "stopped"

        return self._call(run)

    def recreate(self, name: str, image: str | None = None, env_set: dict[str, str] | None = None,
                 env_unset: list[str] | None = None, settle_s: float = 2.0) -> Result[str]:
        """Create ``name`` again with its whole configuration (``docker inspect``'s Config, HostConfig
        and networks), changing only the image and the environment, and start it - what ``docker
        compose up`` does on a changed service. See :mod:`es_doctor.probes.recreate`.

        Nothing is removed before the new container runs: the image is checked (pulled if missing)
        first; the old container is renamed aside, the new one created under its name and started; the
        old one is removed only when the new one still runs ``settle_s`` later. On any failure the new
        container is removed and the old one gets its name back and runs again as it did."""
        from es_doctor.probes.recreate import recreate_container

        return self._call(lambda c: recreate_container(c, name, image=image, env_set=env_set or {},
                                                       env_unset=list(env_unset or []), settle_s=settle_s))

    def compose_containers(self, project: str, service: str | None = None) -> Result[list[str]]:
        labels = {"com.docker.compose.project": project}
        if service:
            labels["com.docker.compose.service"] = service
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        return self._call(lambda c: sorted(x.name for x in c.containers.list(all=True, filters=filters)))

    def prune(self) -> Result[dict[str, Any]]:
        def run(c: Any) -> dict[str, Any]:
            images = c.images.prune(filters={"dangling": True}) or {}
            containers = c.containers.prune() or {}
            return {"images_deleted": len(images.get("ImagesDeleted") or []),
                    "containers_deleted": len(containers.get("ContainersDeleted") or []),
                    "space_reclaimed": int(images.get("SpaceReclaimed") or 0)}

        return self._call(run)

    def build(self, context: str, tag: str, nocache: bool = True) -> Result[str]:
        def run(c: Any) -> str:
            image, _logs = c.images.build(path=context, tag=tag, nocache=nocache, rm=True, network_mode="host")
            return str(image.id)

        return self._call(run)

    def _volume_helper(self, c: Any, volume: str, image: str) -> Any:
        """A created (never started) container with ``volume`` at /data: for get/put_archive."""
        return c.containers.create(image, command=["true"], volumes=[f"{volume}:/data"],
                                   labels={"es-doctor.helper": "volume"})

    def volume_backup(self, volume: str, dest: str, image: str) -> Result[dict[str, Any]]:
        """Write the volume's content to the tar file ``dest``."""

        def run(c: Any) -> dict[str, Any]:
            c.volumes.get(volume)
            helper = self._volume_helper(c, volume, image)
            try:
                stream, _stat = helper.get_archive("/data/.")
                size = 0
                with Path(dest).open("wb") as out:
                    for chunk in stream:
                        out.write(chunk)
                        size += len(chunk)
            finally:
                helper.remove(force=True)
            return {"volume": volume, "archive": dest, "bytes": size}

        return self._call(run)

    def volume_restore(self, volume: str, source: str, image: str) -> Result[str]:
        def run(c: Any) -> str:
            helper = self._volume_helper(c, volume, image)
            try:
                with Path(source).open("rb") as data:  # streamed to the engine, never read whole
                    if not helper.put_archive("/data", data):
                        raise RuntimeError(f"docker refused to restore {source} into {volume}")
            finally:
                helper.remove(force=True)
            return f"restored {volume} from {source}"

        return self._call(run)

    def volume_recreate(self, volume: str, image: str | None = None) -> Result[str]:
        """Delete and recreate ``volume`` empty; when stopped containers still hold it (Docker then
        refuses the removal) and ``image`` is given, empty it in place instead."""

        def run(c: Any) -> str:
            labels: dict[str, str] = {}
            try:
                old = c.volumes.get(volume)
                labels = old.attrs.get("Labels") or {}
                old.remove(force=True)
            except Exception as exc:  # a missing volume is simply created
                if type(exc).__name__ == "NotFound":
                    pass
                elif image and getattr(exc, "status_code", None) == 409:
                    return self._empty_volume(c, volume, image)
                else:
                    raise
            c.volumes.create(name=volume, labels=labels)
            return f"volume {volume} recreated (empty)"

        return self._call(run)

    def _empty_volume(self, c: Any, volume: str, image: str) -> str:
        """Delete the content of ``volume`` with a short-lived helper container (``find … -exec rm``,
        or busybox's where the image has no applet links)."""
        why = ""
        for argv in (["find", "/data", "-mindepth", "1", "-maxdepth", "1", "-exec", "rm", "-rf", "{}", "+"],
                     ["busybox", "find", "/data", "-mindepth", "1", "-maxdepth", "1", "-exec", "busybox", "rm", "-rf",
                      "{}", "+"]):
            helper = c.containers.create(image, command=argv, volumes=[f"{volume}:/data"], network_mode="none",
                                         labels={"es-doctor.helper": "volume"})
            try:
                helper.start()
            except Exception as exc:  # noqa: BLE001 - no such program in this image: try the next way
                why = short(exc)
                helper.remove(force=True)
                continue
            try:
                status = helper.wait(timeout=max(self.timeout, 60)).get("StatusCode", 1)
                if status != 0:
                    raise RuntimeError(f"emptying {volume} failed (exit {status}): "
                                       f"{helper.logs(tail=5).decode(errors='replace').strip()}")
            finally:
                helper.remove(force=True)
            return f"volume {volume} emptied in place (containers still reference it)"
        raise RuntimeError(f"cannot empty {volume}: the image {image} has neither find nor busybox ({why})")

    def volume_users(self, volume: str) -> Result[list[str]]:
        """The containers (any state, helpers excluded) that mount ``volume``."""

        def run(c: Any) -> list[str]:
            return sorted(ct.name for ct in c.containers.list(all=True, filters={"volume": volume})
                          if "es-doctor.helper" not in (ct.labels or {}))

        return self._call(run)

    def volume_exists(self, volume: str) -> Result[bool]:
        return self._call(lambda c: any(v.name == volume for v in c.volumes.list(filters={"name": volume})))


class LogStream:
    """The chunks of a container's log; an error while reading ends the stream and is kept in
    ``failure`` (a read timeout while following, the engine going away)."""

    def __init__(self, chunks: Any, classify: Any) -> None:
        self._chunks = chunks
        self._classify = classify
        self.failure: Failure | None = None

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._chunks:
                yield bytes(chunk)
        except Exception as exc:  # noqa: BLE001 - the probe boundary: an interrupted stream is a failure
            self.failure = self._classify(exc)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a stream that already failed
            self._chunks.close()


def unavailable(reason: str) -> Result[Any]:
    return failed(FailureKind.UNAVAILABLE, reason)


def _q(part: str) -> str:
    from urllib.parse import quote

    return quote(part, safe="")


def _engine_message(body: bytes) -> str:
    """The engine's error message (``{"message": …}``), else the start of its body."""
    import json

    try:
        doc = json.loads(body[:65536])
        if isinstance(doc, dict) and isinstance(doc.get("message"), str):
            return str(doc["message"])
    except ValueError:
        pass
    return body[:200].decode("utf-8", errors="replace").strip()


def demultiplex(raw: bytes) -> bytes:
    """A container's log stream without the engine's 8-byte frame headers (stdout and stderr, in order)."""
    out, at = bytearray(), 0
    while at + 8 <= len(raw):
        size = int.from_bytes(raw[at + 4:at + 8], "big")
        if raw[at] not in (0, 1, 2) or raw[at + 1:at + 4] != b"\0\0\0":
            return raw  # not multiplexed after all: the raw text
        out += raw[at + 8:at + 8 + size]
        at += 8 + size
    return bytes(out)


def _memory(stats: dict[str, Any]) -> MemoryStats:
    mem = stats.get("memory_stats") or {}
    usage = int(mem.get("usage", 0))
    cache = int((mem.get("stats") or {}).get("cache", 0) or (mem.get("stats") or {}).get("inactive_file", 0))
    return MemoryStats(usage=max(0, usage - cache), limit=int(mem.get("limit", 0)))


def _tar_member(data: bytes, path: str) -> str:
    """The text of the one file in a ``docker cp`` archive."""
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        member = archive.next()
        handle = archive.extractfile(member) if member is not None else None
        if handle is None:
            raise FileNotFoundError(f"{path} is not a regular file")
        return handle.read().decode("utf-8", errors="replace")
