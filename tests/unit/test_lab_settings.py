"""The lab's own state, computed without starting it: one private engine per lab dir, the settings a
restarted lab takes, the command its hints name, and the observer of every orchestration fault."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from es_doctor.cli.lab import self_command
from es_doctor.lab.fault_state import OBSERVERS
from es_doctor.lab.fault_table import TABLE
from es_doctor.lab.layout import LEGACY_ENGINE_DIR, LabPorts, LabSettings, fresh_settings, private_engine_dir


def test_each_lab_dir_has_its_own_engine_with_a_short_socket_path(tmp_path: Path) -> None:
    one, two = tmp_path / "lab-one", tmp_path / "lab-two"
    assert private_engine_dir(one) != private_engine_dir(two)
    assert private_engine_dir(one) == private_engine_dir(tmp_path / "x" / ".." / "lab-one")  # same dir, same engine
    deep = tmp_path.joinpath(*(["a-rather-long-directory-name"] * 12))
    assert len(str(deep)) > 300
    assert len(f"{private_engine_dir(deep)}/d.sock") < 100  # under the kernel's unix socket limit (108)
    assert private_engine_dir(one) != LEGACY_ENGINE_DIR


def test_a_lab_json_of_the_shared_engine_days_is_read_as_that_engine(tmp_path: Path) -> None:
    settings = LabSettings(mode="docker", ports=LabPorts(1, 2, 3, 4, 5), docker_host=f"unix://{LEGACY_ENGINE_DIR}/d.sock")
    data = json.loads(json.dumps(settings.__dict__, default=lambda o: o.__dict__))
    del data["private_engine"]
    (tmp_path / "lab.json").write_text(json.dumps(data), encoding="utf-8")
    assert LabSettings.load(tmp_path).private_engine == str(LEGACY_ENGINE_DIR)


def test_a_restarted_lab_is_detected_again_and_keeps_its_passwords_and_free_ports(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        old = LabSettings(mode="process", ports=LabPorts(free, taken, 0, 0, 0), pg_password="pw",
                          pg_superuser_password="su", absent={"prometheus": "prometheus not installed"})
        old.save(tmp_path)
        new = fresh_settings(tmp_path, "docker", LabPorts(prometheus=free + 1 if free < 65535 else 1024),
                             "unix:///tmp/x/d.sock", Path("/tmp/x"), {})
    assert (new.mode, new.docker_host, new.private_engine, new.absent) == ("docker", "unix:///tmp/x/d.sock", "/tmp/x",
                                                                           {})
    assert (new.pg_password, new.pg_superuser_password) == ("pw", "su")  # the data's cluster was made with them
    assert new.ports.api == free  # still free: the same address
    assert new.ports.metrics != taken and new.ports.metrics  # taken meanwhile: another one
    assert new.ports.prometheus == (free + 1 if free < 65535 else 1024)  # given on the command line
    assert all(getattr(new.ports, name) for name in ("qdrant", "postgres"))


def test_a_first_lab_gets_new_passwords_later(tmp_path: Path) -> None:
    new = fresh_settings(tmp_path, "process", LabPorts(), None, None, {"postgres": "not installed"})
    assert (new.pg_password, new.absent, new.private_engine) == ("", {"postgres": "not installed"}, None)


def test_the_hint_names_the_command_that_ran(tmp_path: Path) -> None:
    script = tmp_path / ".venv" / "bin" / "es-doctor"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n", encoding="utf-8")
    # not on PATH: the path it was started by, relative to where the operator is
    assert self_command(".venv/bin/es-doctor", which="", cwd=tmp_path) == ".venv/bin/es-doctor"
    assert self_command(str(script), which="", cwd=tmp_path) == ".venv/bin/es-doctor"
    assert self_command(str(script), which="", cwd=tmp_path / ".venv" / "bin") == "./es-doctor"
    assert self_command(str(script), which="", cwd=Path("/")) == str(script)
    # on PATH, and that is the one that ran: its name
    assert self_command(str(script), which=str(script), cwd=Path("/")) == "es-doctor"
    # another es-doctor on PATH (say pipx's): the one that ran, by its path
    assert self_command(str(script), which="/usr/local/bin/es-doctor", cwd=Path("/")) == str(script)
    # python -m es_doctor
    assert self_command("/x/es_doctor/__main__.py", which="", cwd=tmp_path).endswith(" -m es_doctor")


def test_every_orchestration_fault_is_observed() -> None:
    """A fault the lab cannot observe would stay 'active' after its cure: every orchestration fault has an
    observer; runtime faults are observed through faults.json and the service's /_lab/state."""
    orchestration = {spec.name for spec in TABLE if spec.kind == "orchestration"}
    assert set(OBSERVERS) == orchestration
