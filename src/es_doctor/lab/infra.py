"""Real infrastructure for the lab, from Debian's packages (RECIPES.md): dockerd, PostgreSQL, Prometheus.

Everything listens on 127.0.0.1, on ports the caller chose. Each ``start_*`` returns a handle with
``stop()``; the command builders (``postgres_argv``, ``prometheus_argv``, …) are shared with
:mod:`es_doctor.lab.stack`, which runs the same programs inside containers.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from es_doctor.lab import procs

BASE_IMAGE = "es-doctor-lab/base:latest"
BUSYBOX = Path("/bin/busybox")
BUSYBOX_LINKS = ("sh", "echo", "sleep", "cat", "ls", "env", "tar", "chroot", "id", "ps", "kill")


class InfraError(RuntimeError):
    """A component could not be started."""


# --------------------------------------------------------------------------- discovery


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def postgres_bindir() -> Path | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` holding ``postgres`` and ``initdb``."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                        if p.parent.name.isdigit() else 0)
    for bindir in reversed(candidates):
        if (bindir / "postgres").is_file() and (bindir / "initdb").is_file():
            return bindir
    return None


def availability() -> dict[str, str | None]:
    """Each component → None when it can be started here, else the reason it cannot."""
    out: dict[str, str | None] = {}
    if shutil.which("dockerd") is None:
        out["docker"] = "dockerd not installed (apt-get install docker.io)"
    elif os.geteuid() != 0:
        out["docker"] = "dockerd needs root"
    elif not BUSYBOX.is_file():
        out["docker"] = "busybox-static not installed (the lab image's rootfs)"
    else:
        out["docker"] = None
    if postgres_bindir() is None:
        out["postgres"] = "PostgreSQL server not installed (apt-get install postgresql)"
    elif os.geteuid() != 0 or shutil.which("setpriv") is None:
        out["postgres"] = "starting PostgreSQL as user postgres needs root and setpriv"
    else:
        out["postgres"] = None
    missing = [b for b in ("prometheus", "promtool") if shutil.which(b) is None]
    out["prometheus"] = f"{', '.join(missing)} not installed (apt-get install prometheus)" if missing else None
    return out


def http_ok(url: str, timeout: float = 1.0, method: str = "GET") -> bool:
    import httpx

    try:
        return httpx.request(method, url, timeout=timeout).is_success
    except httpx.HTTPError:
        return False


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise InfraError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------- dockerd


@dataclass
class Dockerd:
    run_dir: Path
    host: str
    pid: int

    def stop(self, timeout: float = 20.0) -> None:
        procs.stop(self.run_dir / "docker.pid.lab", signal.SIGTERM, timeout)
        unmount_under(self.run_dir)


def unmount_under(root: Path) -> None:
    """Unmount what dockerd left mounted under ``root`` (its netns), deepest first."""
    prefix = str(root.resolve()) + "/"
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def start_dockerd(run_dir: Path, timeout: float = 30.0) -> Dockerd:
    """dockerd without network or registry (RECIPES.md). Keep ``run_dir`` short: the socket lives there."""
    run_dir.mkdir(parents=True, exist_ok=True)
    sock = run_dir / "d.sock"
    if len(str(sock)) > 100:
        raise InfraError(f"run dir too long for a unix socket: {run_dir}")
    argv = ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
            f"--host=unix://{sock}", f"--data-root={run_dir / 'data'}", f"--exec-root={run_dir / 'exec'}",
            f"--pidfile={run_dir / 'docker.pid'}"]
    pid = procs.spawn(argv, run_dir / "docker.pid.lab", run_dir / "dockerd.log")
    host = f"unix://{sock}"
    try:
        wait_until(lambda: docker_ping(host), timeout, "dockerd")
    except InfraError:
        procs.stop(run_dir / "docker.pid.lab", signal.SIGKILL, 5)
        log = (run_dir / "dockerd.log").read_text(errors="replace")[-2000:]
        raise InfraError(f"dockerd did not answer: {log}") from None
    return Dockerd(run_dir, host, pid)


def docker_ping(host: str | None) -> bool:
    """Whether a Docker engine answers at ``host`` (None: ``$DOCKER_HOST`` / the default socket)."""
    import docker

    try:
        client = docker.DockerClient(base_url=host, timeout=3) if host else docker.from_env(timeout=3)
    except docker.errors.DockerException:
        return False
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False
    finally:
        client.close()


def ensure_base_image(docker_host: str, tag: str = BASE_IMAGE, release: str | None = None) -> str:
    """Import a busybox-static rootfs as ``tag`` unless it exists (no registry needed).

    ``release`` is written to ``/etc/es-doctor-lab-release``: images with different releases have
    different ids (the lab's "previous" image is a real other image, not another tag).
    """
    import docker

    client = docker.DockerClient(base_url=docker_host)
    try:
        try:
            client.images.get(tag)
            return tag
        except docker.errors.ImageNotFound:
            pass
        with tempfile.TemporaryDirectory(prefix="esd-rootfs-") as tmp:
            tar_path = Path(tmp) / "rootfs.tar"
            with tarfile.open(tar_path, "w") as tar:
                for name in ("bin", "tmp", "app", "host", "proc", "sys", "dev", "etc"):
                    info = tarfile.TarInfo(name)
                    info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
                    tar.addfile(info)
                tar.add(BUSYBOX, arcname="bin/busybox")
                if release is not None:
                    data = f"{release}\n".encode()
                    info = tarfile.TarInfo("etc/es-doctor-lab-release")
                    info.size, info.mode = len(data), 0o644
                    tar.addfile(info, io.BytesIO(data))
                for link in BUSYBOX_LINKS:
                    info = tarfile.TarInfo(f"bin/{link}")
                    info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                    tar.addfile(info)
            repo, _, version = tag.rpartition(":")
            changes = [f"ENV LAB_RELEASE={release}"] if release else None
            client.api.import_image_from_file(str(tar_path), repository=repo, tag=version, changes=changes)
        client.images.get(tag)
        return tag
    finally:
        client.close()


# --------------------------------------------------------------------------- PostgreSQL


def as_postgres(argv: list[str]) -> list[str]:
    """Run ``argv`` as the system user postgres (exec, no fork: signals reach the server)."""
    return ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def chown_postgres(path: Path) -> None:
    shutil.chown(path, "postgres", "postgres")


def initdb_argv(data_dir: Path, pwfile: Path) -> list[str]:
    bindir = postgres_bindir()
    if bindir is None:
        raise InfraError("PostgreSQL is not installed")
    return as_postgres([str(bindir / "initdb"), "-D", str(data_dir), "-U", "postgres", f"--pwfile={pwfile}",
                        "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync", "-E", "UTF8",
                        "--locale=C.UTF-8"])


def postgres_argv(data_dir: Path, port: int, socket_dir: Path) -> list[str]:
    bindir = postgres_bindir()
    if bindir is None:
        raise InfraError("PostgreSQL is not installed")
    return as_postgres([str(bindir / "postgres"), "-D", str(data_dir), "-p", str(port), "-k", str(socket_dir),
                        "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=50"])


def postgres_ready(port: int, password: str, user: str = "postgres", dbname: str = "postgres") -> bool:
    import psycopg

    try:
        with psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname=dbname,
                             connect_timeout=2) as conn:
            conn.execute("SELECT 1")
            return True
    except psycopg.Error:
        return False


def provision_database(port: int, superuser_password: str, password: str,
                       role: str = "emailsender", dbname: str = "email_sender") -> None:
    """Create the stack's role and database (idempotent)."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=superuser_password,
                         dbname="postgres", autocommit=True, connect_timeout=5) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(password)))
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(role)))
    # amcheck (PostgreSQL's contrib) lets `es-doctor emergency validate` verify the B-tree indexes
    with psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=superuser_password,
                         dbname=dbname, autocommit=True, connect_timeout=5) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION bt_index_check(regclass), bt_index_check(regclass, boolean) "
                             "TO {}").format(sql.Identifier(role)))


@dataclass
class Postgres:
    port: int
    password: str
    superuser_password: str
    data_dir: Path
    pidfile: Path
    user: str = "emailsender"
    dbname: str = "email_sender"

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{self.dbname}"

    @property
    def dsn_with_password(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.dbname}"

    def stop(self, timeout: float = 15.0) -> None:
        procs.stop(self.pidfile, signal.SIGINT, timeout)  # SIGINT: fast shutdown


def write_pwfile(directory: Path, password: str) -> Path:
    pwfile = directory / "superuser.pw"
    pwfile.write_text(password + "\n", encoding="utf-8")
    pwfile.chmod(0o600)
    chown_postgres(pwfile)
    return pwfile


def traversable(path: Path) -> bool:
    """Whether every ancestor of ``path`` lets other users (postgres) through."""
    return all(p.stat().st_mode & 0o001 for p in path.resolve().parents if p.exists())


def start_postgres(run_dir: Path, port: int, password: str | None = None, timeout: float = 30.0) -> Postgres:
    """A PostgreSQL server as user postgres in ``run_dir`` (a fresh cluster when none exists)."""
    root = run_dir.resolve()
    root.parent.mkdir(parents=True, exist_ok=True)
    if not traversable(root):
        raise InfraError(f"user postgres cannot reach {root}: an ancestor directory lacks o+x")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    chown_postgres(root)
    secrets_file = root / "secrets.json"
    if secrets_file.is_file():
        secrets = json.loads(secrets_file.read_text(encoding="utf-8"))
    else:
        secrets = {"superuser": procs.new_password(), "emailsender": password or procs.new_password()}
    data_dir = root / "data"
    if not (data_dir / "PG_VERSION").is_file():
        pwfile = write_pwfile(root, secrets["superuser"])
        result = subprocess.run(initdb_argv(data_dir, pwfile), capture_output=True, text=True, check=False)
        pwfile.unlink()
        if result.returncode != 0:
            raise InfraError(f"initdb failed: {result.stderr.strip()[-1000:]}")
        secrets_file.write_text(json.dumps(secrets), encoding="utf-8")
        secrets_file.chmod(0o600)
    pidfile = root / "postgres.pid.lab"
    procs.spawn(postgres_argv(data_dir, port, root), pidfile, root / "postgres.log")
    handle = Postgres(port, secrets["emailsender"], secrets["superuser"], data_dir, pidfile)
    try:
        wait_until(lambda: postgres_ready(port, secrets["superuser"]), timeout, "PostgreSQL", 0.2)
        provision_database(port, secrets["superuser"], secrets["emailsender"])
    except Exception:
        handle.stop()
        raise
    return handle


# --------------------------------------------------------------------------- Prometheus


def prometheus_config(targets: list[str], job: str = "email-sender", rule_files: list[str] | None = None,
                      metrics_path: str = "/metrics") -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
        "rule_files": list(rule_files or []),
        "scrape_configs": [{"job_name": job, "metrics_path": metrics_path,
                            "static_configs": [{"targets": list(targets)}]}],
    }


def write_prometheus_config(path: Path, config: dict[str, Any]) -> Path:
    """Write ``prometheus.yml`` and validate it with ``promtool check config``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    result = subprocess.run(["promtool", "check", "config", str(path)], capture_output=True, text=True,
                            check=False)
    if result.returncode != 0:
        raise InfraError(f"promtool rejected {path}: {(result.stdout + result.stderr).strip()}")
    return path


def prometheus_target_up(url: str, job: str) -> bool:
    """Whether Prometheus at ``url`` has scraped ``job`` successfully (its last scrape is up)."""
    import httpx

    try:
        data = httpx.get(f"{url}/api/v1/targets", params={"state": "active"}, timeout=2).json()
        targets = data["data"]["activeTargets"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return False
    return any(t.get("labels", {}).get("job") == job and t.get("health") == "up" for t in targets)


def prometheus_argv(config_file: Path, port: int, storage: Path) -> list[str]:
    return [shutil.which("prometheus") or "/usr/bin/prometheus", f"--config.file={config_file}",
            f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.path={storage}",
            "--web.enable-lifecycle", "--log.level=warn"]


