"""Every command's help reads as words: metavars, whole descriptions, examples, the lab's faults listed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from es_doctor.cli.main import command, main
from es_doctor.errors import ExitStatus


def _paths() -> list[list[str]]:
    paths: list[list[str]] = [[]]

    def walk(cmd: object, prefix: list[str]) -> None:
        for name, sub in getattr(cmd, "commands", {}).items():
            paths.append([*prefix, name])
            walk(sub, [*prefix, name])

    walk(command(), [])
    return paths


def _help(path: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main([*path, "--help"]) == ExitStatus.OK
    return capsys.readouterr().out


@pytest.mark.parametrize("path", _paths(), ids=lambda p: " ".join(p) or "root")
def test_help_has_no_type_artefacts_and_has_examples(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(path, capsys)
    # an option or argument followed by a type: <str>, <list[str]>, <float range>, <path>
    assert not re.search(r"(--?[\w-]+|\b[A-Z][A-Z_|.]*) <[a-z][^>]*>", out), out
    usage = out.splitlines()[0]
    assert "{" not in usage and "[[" not in usage, usage
    assert not re.search(r"<=\s*x|x\s*<=|x\s*>=|>=\s*x", out), out  # click's range markers ([1<=x<=3])
    assert "Examples:" in out
    examples = out.split("Examples:", 1)[1].split("\n\n", 1)[0].strip().splitlines()
    assert examples and all(line.strip().startswith(("es-doctor", "ES_DOCTOR_")) for line in examples), examples


@pytest.mark.parametrize("path", [p for p in _paths() if not p or p in (["config"], ["lab"], ["lab", "fault"],
                                                                          ["runbooks"], ["emergency"])],
                         ids=lambda p: " ".join(p) or "root")
def test_group_help_lists_whole_descriptions(path: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(path, capsys)
    listing = out.split("Commands:", 1)[1].split("Examples:", 1)[0]
    assert "..." not in listing, listing
    root = command()
    group = root
    for name in path:
        group = group.commands[name]  # type: ignore[attr-defined]
    for name, sub in group.commands.items():  # type: ignore[attr-defined]
        last_word = " ".join((sub.help or "").split("\n\n")[0].split())[-12:]
        assert last_word in " ".join(listing.split()), (name, last_word)


def test_lab_fault_add_documents_name_and_lists_every_fault(capsys: pytest.CaptureFixture[str]) -> None:
    from es_doctor.lab.fault_table import TABLE

    out = _help(["lab", "fault", "add"], capsys)
    assert "Usage: es-doctor lab fault add [OPTIONS] NAME" in out
    arguments = out.split("Arguments:", 1)[1].split("Options:", 1)[0]
    assert "NAME" in arguments and "fault to inject" in arguments
    faults = out.split("Faults", 1)[1]
    for spec in TABLE:
        assert re.search(rf"^\s+{re.escape(spec.name)}\s+\S", faults, re.MULTILINE), spec.name


def test_lab_up_mode_lists_its_values(capsys: pytest.CaptureFixture[str]) -> None:
    out = _help(["lab", "up"], capsys)
    assert "--mode [auto|docker|process]" in out


def test_optional_and_required_arguments_read_plainly(capsys: pytest.CaptureFixture[str]) -> None:
    assert _help(["emergency", "validate"], capsys).splitlines()[0].endswith("[OPTIONS] [BACKUP]")
    assert _help(["emergency", "restore"], capsys).splitlines()[0].endswith("[OPTIONS] BACKUP")
    assert _help(["lab", "restart"], capsys).splitlines()[0].endswith("[OPTIONS] NAME")
    assert _help(["runbooks", "validate"], capsys).splitlines()[0].endswith("[OPTIONS] [PATH]...")


def test_a_bad_choice_is_named_without_pydantic_words(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diagnose", "--format", "xml"]) == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert "'xml' is not one of" in err
    assert "Value error" not in err


def test_a_bound_reads_in_words(capsys: pytest.CaptureFixture[str]) -> None:
    assert "(1 to 3)" in _help(["escalate"], capsys)


def _short_flags() -> dict[str, dict[str, list[str]]]:
    """short flag → its long name → the commands that give it that meaning."""
    found: dict[str, dict[str, list[str]]] = {}

    def walk(cmd: object, prefix: list[str]) -> None:
        for param in getattr(cmd, "params", []):
            names = [*param.opts, *param.secondary_opts]
            long = next((n for n in names if n.startswith("--")), param.name)
            for short in (n for n in names if len(n) == 2):
                found.setdefault(short, {}).setdefault(long, []).append(" ".join(prefix) or "es-doctor")
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*prefix, name])

    walk(command(), [])
    return found


def test_a_short_flag_means_one_thing_in_every_command() -> None:
    """#21 item 7: -f was format or follow, -C component or concurrency, -s since, scenario, seconds or
    severity, -d detailed or duration, -p param or patterns."""
    mixed = {short: longs for short, longs in _short_flags().items() if len(longs) > 1}
    assert mixed == {}
    flags = {short: next(iter(longs)) for short, longs in _short_flags().items()}
    assert flags["-f"] == "--format" and flags["-t"] == "--target" and flags["-o"] == "--output"
    assert flags["-F"] == "--follow" and flags["-v"] == "--detailed"


@pytest.mark.parametrize(("words", "expected"), [
    ("es-doctor lab fault add slow-api", {"slow-api-crit", "slow-api-warn"}),
    ("es-doctor lab fault clear qdrant-d", {"qdrant-down"}),
    ("es-doctor diagnose --check startup.api", {"startup.api-port"}),
    ("es-doctor diagnose --class vec", {"vectors"}),
    ("es-doctor fix qdrant-dim", {"qdrant-dimension-fix"}),
    ("es-doctor runbooks show event-bus", {"event-bus-purge"}),
    ("es-doctor -t la", {"lab"}),
    ("es-doctor -c CONFIG -t ", {"lab", "staging", "production"}),
    ("es-doctor -c CONFIG fix -t p", {"production"}),
])
def test_values_complete(words: str, expected: set[str], monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str], tmp_path: object) -> None:
    """Targets, check ids, classes, runbook ids and fault names complete in the shell (bash protocol)."""
    config = Path(str(tmp_path)) / "es-doctor.yaml"
    config.write_text("targets:\n  staging: {}\n  production: {}\n", encoding="utf-8")
    words = words.replace("CONFIG", str(config))
    monkeypatch.setenv("_ES_DOCTOR_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", words)
    monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - (0 if words.endswith(" ") else 1)))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("ES_DOCTOR_CONFIG", raising=False)
    monkeypatch.chdir(str(tmp_path))
    with pytest.raises(SystemExit):  # click answers the completion request and exits
        main([])
    offered = set(capsys.readouterr().out.split())
    assert expected <= offered, offered
