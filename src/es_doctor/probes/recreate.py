"""Recreate a container with its whole configuration, never losing the one that runs.

``docker compose up`` on a changed service, done with the Engine API: the new container gets the old
one's ``Config``, ``HostConfig`` and networks from ``docker inspect`` (port bindings, extra hosts,
healthcheck, labels, user, working directory, entrypoint and command, mounts, restart policy,
resources...), with only the image and the environment changed. Its anonymous volumes are carried
over by name (none is left behind per recreate).

Order (nothing is deleted until the replacement runs):

1. the image is checked on the engine, pulled when missing; a missing image changes nothing;
2. the old container is renamed aside (``NAME-es-doctor-old-ID``) and the new one created as ``NAME``;
3. the old one is stopped (when it ran), the new one started; it must still run ``settle_s`` later;
4. only then is the old one removed.

On a failure in 2-3 the new container is removed, the old one gets its name back and is started
again if it was running; the error says so (and says what could not be put back, if anything).
"""

from __future__ import annotations

import copy
import time
from typing import Any

#: ``Config`` fields an image provides: when the image changes, a value equal to the old image's is the
#: old image's default, not the container's own setting, and is left to the new image
IMAGE_DEFAULTS = ("Entrypoint", "WorkingDir", "User", "Healthcheck", "StopSignal", "ExposedPorts", "Volumes",
                  "Shell", "OnBuild")
#: network modes that take no endpoint configuration and no hostname of their own
SHARED_NET = ("host", "none")


class RecreateError(RuntimeError):
    """The recreate failed; the message says what state the container was left in."""


def env_dict(entries: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in entries or []:
        key, sep, value = entry.partition("=")
        if sep:
            out[key] = value
    return out


def create_body(old: dict[str, Any], new_image: str, old_image_config: dict[str, Any] | None,
                env_set: dict[str, str], env_unset: list[str]) -> dict[str, Any]:
    """The ``POST /containers/create`` body for the replacement of ``old`` (its inspect): its whole
    Config and HostConfig, the image ``new_image``, the environment changed by ``env_set`` and
    ``env_unset``, and its anonymous volumes mounted again by name."""
    config = copy.deepcopy(old.get("Config") or {})
    host = copy.deepcopy(old.get("HostConfig") or {})
    image_cfg = old_image_config or {}
    old_id = str(old.get("Id", ""))
    mode = str(host.get("NetworkMode") or "")
    if config.get("Hostname") == old_id[:12] or mode in ("host",) or mode.startswith("container:"):
        config.pop("Hostname", None)  # the engine's default (the id), or not the container's to set
        config.pop("Domainname", None)
    baked = set(image_cfg.get("Env") or [])
    env = {k: v for k, v in env_dict(config.get("Env")).items() if f"{k}={v}" not in baked}
    for key in env_unset:
        env.pop(key, None)
    env.update(env_set)
    config["Env"] = [f"{k}={v}" for k, v in env.items()]
    changed_image = new_image != config.get("Image")
    if changed_image and image_cfg:
        for key in IMAGE_DEFAULTS:
            if key in config and config[key] == image_cfg.get(key):
                del config[key]
        if "Entrypoint" not in config and config.get("Cmd") == image_cfg.get("Cmd"):
            config.pop("Cmd", None)  # an overridden entrypoint clears the image's Cmd: keep it then
        image_labels = image_cfg.get("Labels") or {}
        config["Labels"] = {k: v for k, v in (config.get("Labels") or {}).items() if image_labels.get(k) != v}
    config["Image"] = new_image
    covered = {str(b).split(":")[1] for b in host.get("Binds") or [] if ":" in str(b)}
    covered |= {str(m.get("Target")) for m in host.get("Mounts") or []}
    carried = [f"{m['Name']}:{m['Destination']}{'' if m.get('RW', True) else ':ro'}"
               for m in old.get("Mounts") or []
               if m.get("Type") == "volume" and m.get("Name") and m.get("Destination") not in covered]
    if carried:
        host["Binds"] = list(host.get("Binds") or []) + carried
    body: dict[str, Any] = dict(config)
    body["HostConfig"] = host
    networks = endpoints(old)
    if networks:
        first = mode if mode in networks else next(iter(networks))
        body["NetworkingConfig"] = {"EndpointsConfig": {first: networks[first]}}
    return body


def endpoints(old: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The container's user-set endpoint settings per network (aliases, static addresses, links)."""
    mode = str((old.get("HostConfig") or {}).get("NetworkMode") or "")
    if mode in SHARED_NET or mode.startswith("container:"):
        return {}
    short_id = str(old.get("Id", ""))[:12]
    out: dict[str, dict[str, Any]] = {}
    for net, settings in ((old.get("NetworkSettings") or {}).get("Networks") or {}).items():
        endpoint: dict[str, Any] = {}
        aliases = [a for a in settings.get("Aliases") or [] if a != short_id]
        if aliases:
            endpoint["Aliases"] = aliases
        for key in ("IPAMConfig", "Links", "DriverOpts"):
            if settings.get(key):
                endpoint[key] = settings[key]
        out[str(net)] = endpoint
    return out


def ensure_image(client: Any, image: str) -> None:
    """The image is on the engine, else pulled; a RecreateError (nothing changed) when neither."""
    api = client.api
    try:
        api.inspect_image(image)
        return
    except Exception as exc:
        if type(exc).__name__ not in ("NotFound", "ImageNotFound"):
            raise
    try:
        has_tag = ":" in image.rsplit("/", maxsplit=1)[-1]
        repository, _, tag = image.rpartition(":") if has_tag else (image, "", "latest")
        client.images.pull(repository, tag=tag or "latest")
        api.inspect_image(image)
    except Exception as exc:  # noqa: BLE001 - any reason: say it, change nothing
        raise RecreateError(f"the container was left as it was: image {image} is not on the engine and could not "
                            f"be pulled ({type(exc).__name__}: {str(exc)[:300]})") from None


def recreate_container(client: Any, name: str, *, image: str | None, env_set: dict[str, str],
                       env_unset: list[str], settle_s: float = 2.0) -> str:
    api = client.api
    old = api.inspect_container(name)
    old_id = str(old["Id"])
    new_image = image or str(old["Config"]["Image"])
    ensure_image(client, new_image)
    try:
        old_image_config = (api.inspect_image(old["Image"]).get("Config") or {})
    except Exception:  # noqa: BLE001 - the old image may be gone: keep every setting then
        old_image_config = None
    body = create_body(old, new_image, old_image_config, env_set, env_unset)
    networks = endpoints(old)
    first = next(iter((body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}), None)
    was_running = bool((old.get("State") or {}).get("Running"))
    stop_timeout = int(old["Config"].get("StopTimeout") or 10)
    aside = f"{old['Name'].lstrip('/')}-es-doctor-old-{old_id[:12]}"
    api.rename(old_id, aside)
    new_id = ""
    try:
        new_id = str(api.create_container_from_config(body, name)["Id"])
        for net, endpoint in networks.items():
            if net != first:
                api.connect_container_to_network(new_id, net, aliases=endpoint.get("Aliases"),
                                                 links=endpoint.get("Links"), driver_opt=endpoint.get("DriverOpts"))
        if was_running:
            api.stop(old_id, timeout=min(stop_timeout, 30))
        api.start(new_id)
        time.sleep(settle_s)
        _still_running(api, new_id, settle_s)
    except BaseException as exc:
        problems = _put_back(api, name, old_id, new_id, was_running)
        state = ("the old container was put back" + (" and runs again" if was_running else "")
                 if not problems else "putting the old container back failed: " + "; ".join(problems))
        if isinstance(exc, Exception):
            raise RecreateError(f"recreating {name} from {new_image} failed ({type(exc).__name__}: "
                                f"{str(exc)[:300]}); {state}") from None
        raise
    api.remove_container(old_id, v=False, force=True)  # its anonymous volumes now belong to the new one
    return f"recreated from {new_image}"


def _still_running(api: Any, new_id: str, settle_s: float) -> None:
    now = api.inspect_container(new_id)
    state = now.get("State") or {}
    if state.get("Status") != "running" or state.get("Restarting") or now.get("RestartCount"):
        logs = api.logs(new_id, tail=5).decode("utf-8", errors="replace").strip()
        raise RecreateError(f"the new container is {state.get('Status', '?')} (exit {state.get('ExitCode')}, "
                            f"restarted {now.get('RestartCount', 0)} time(s)) {settle_s:g}s after its start: "
                            f"{logs[-300:]}")


def _put_back(api: Any, name: str, old_id: str, new_id: str, was_running: bool) -> list[str]:
    problems = []
    if new_id:
        try:
            api.remove_container(new_id, v=True, force=True)  # only volumes it created itself go
        except Exception as exc:  # noqa: BLE001 - go on putting the old one back
            problems.append(f"remove the new container {new_id[:12]}: {str(exc)[:200]}")
    try:
        api.rename(old_id, name)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"rename {old_id[:12]} back to {name}: {str(exc)[:200]}")
    if was_running:
        try:
            api.start(old_id)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"start {old_id[:12]} again: {str(exc)[:200]}")
    return problems
