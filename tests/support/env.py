"""An isolated environment: the developer's own settings never reach a test.

``HOME`` and every ``XDG_*`` directory point under the test's own directory and every ``ES_DOCTOR_*``
variable is dropped, so a config file, a state dir, a lab or an API key of the developer's cannot change
what a test sees. The one thing shared is the build cache (``XDG_CACHE_HOME``): the lab's Go programs
are built once per machine, not once per test; a cache holds no state a test could read as a result.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

#: prefixes of the variables dropped from the developer's environment
CLEARED = ("ES_DOCTOR_", "XDG_")

#: the build cache shared by every test of this user (the lab's Go programs), see the module's doc
SHARED_CACHE = Path(tempfile.gettempdir()) / f"es-doctor-test-cache-{os.getuid()}"


def isolated_env(root: Path, env: Mapping[str, str] | None = None, *,
                 drop: Iterable[str] = ()) -> dict[str, str]:
    """The environment of a test whose private directory is ``root``.

    ``HOME`` is ``root/home``; ``XDG_CONFIG_HOME``, ``XDG_STATE_HOME``, ``XDG_DATA_HOME`` and
    ``XDG_RUNTIME_DIR`` are under ``root/xdg`` (created, 0700); ``ES_DOCTOR_LAB_DIR`` is
    ``root/nolab`` (no lab) unless ``env`` names one. ``drop`` lists more prefixes to clear (``"PG"``,
    ``"DOCKER_"``). ``env`` is applied last: a test's own variables win.
    """
    prefixes = (*CLEARED, *drop)
    result = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    home = root / "home"
    dirs = {"HOME": home, "XDG_CONFIG_HOME": root / "xdg" / "config", "XDG_STATE_HOME": root / "xdg" / "state",
            "XDG_DATA_HOME": root / "xdg" / "data", "XDG_RUNTIME_DIR": root / "xdg" / "runtime",
            "XDG_CACHE_HOME": SHARED_CACHE}
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    result.update({name: str(path) for name, path in dirs.items()})
    result["ES_DOCTOR_LAB_DIR"] = str(root / "nolab")
    result.update(env or {})
    return result
