"""The pure logic of backups: the store, path containment, the manifest validation, the archive scan
and the comparison with live data. Everything runs on synthetic directories and archives in tmp_path."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import tarfile
from pathlib import Path
from typing import Any

import pytest

from es_doctor.backup import (
    FORMAT,
    ID_PATTERN,
    MANIFEST,
    BackupError,
    BackupStore,
    Problem,
    Validation,
    compare,
    inside,
    safe_name,
    scan_archive,
    validate_backup,
)

BACKUP_ID = "20260101T000000Z"


# --------------------------------------------------------------------------- helpers


def _complete(root: Path, backup_id: str) -> Path:
    """A minimal complete backup directory (an id dir holding a manifest)."""
    path = root / backup_id
    path.mkdir(parents=True)
    (path / MANIFEST).write_text(json.dumps({"format": FORMAT, "id": backup_id}), encoding="utf-8")
    return path


def _tar(dest: Path, members: dict[str, bytes], directories: tuple[str, ...] = ()) -> int:
    """A plain tar with the given files (and directories); its member count."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(dest, "w") as tar:
        for name in directories:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return len(directories) + len(members)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")


def _listing(path: Path) -> list[dict[str, Any]]:
    return [{"path": p.relative_to(path).as_posix(), "bytes": p.stat().st_size, "sha256": _sha(p)}
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != MANIFEST]


def _make_backup(root: Path) -> tuple[Path, dict[str, Any]]:
    """A synthetic, intact backup: a Qdrant snapshot, a volume archive and the config, with the
    manifest Backup.run writes (no PostgreSQL dump, so no pg_restore is needed)."""
    path = root / BACKUP_ID
    path.mkdir(parents=True)
    _tar(path / "qdrant" / "c.snapshot", {"segments/0.bin": b"\x01" * 300, "config.json": b"{}"})
    members = _tar(path / "volumes" / "v.tar", {"./data/a.json": b'{"a": 1}', "./data/b.txt": b"hello" * 50},
                   directories=(".", "./data"))
    (path / "config").mkdir()
    (path / "config" / "config.yaml").write_text("listen: 127.0.0.1:8080\n", encoding="utf-8")
    manifest: dict[str, Any] = {
        "format": FORMAT, "id": BACKUP_ID, "target": "lab", "reason": "test",
        "started_at": "2026-01-01T00:00:00+00:00", "finished_at": "2026-01-01T00:00:05+00:00",
        "files": _listing(path), "skipped": {"postgres": "not configured"}, "postgres": None,
        "qdrant": {"embedded": False, "collections": {"c": {
            "snapshot": "qdrant/c.snapshot", "points": 1, "sha256_points": "ab" * 32,
            "vector_size": 4, "distance": "Cosine"}}},
        "volumes": [{"volume": "v", "archive": "volumes/v.tar", "members": members}],
    }
    _write_manifest(path, manifest)
    return path, manifest


def _crit(v: Validation) -> list[Problem]:
    return [p for p in v.problems if p.severity == "CRIT"]


def _sqlite_db(path: Path, rows: int = 200) -> Path:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("CREATE INDEX t_body ON t (body)")
        db.executemany("INSERT INTO t (body) VALUES (?)", [(f"row {i} " + "x" * 40,) for i in range(rows)])
    db.close()
    return path


# --------------------------------------------------------------------------- the store


def test_begin_creates_a_hidden_partial_dir_with_a_valid_id(tmp_path: Path) -> None:
    store = BackupStore(tmp_path / "backups")
    backup_id, partial = store.begin()
    assert ID_PATTERN.match(backup_id)
    assert partial == store.root / f".{backup_id}.partial"
    assert partial.is_dir()
    assert partial.name.startswith(".")
    assert not (store.root / backup_id).exists()
    assert store.complete() == []
    assert store.incomplete() == [partial.name]


def test_two_begins_in_the_same_second_get_distinct_ids(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    for _ in range(20):  # retried only when the clock ticks between the two calls
        first, p1 = store.begin()
        second, p2 = store.begin()
        if second.split("-")[0] == first:
            break
    else:  # pragma: no cover - 20 second boundaries in a row
        pytest.fail("never two begin() calls within one second")
    assert second == f"{first}-1"
    assert ID_PATTERN.match(second)
    assert p1 != p2
    assert p1.is_dir()
    assert p2.is_dir()


def test_begin_skips_an_id_whose_final_dir_exists(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    for _ in range(20):
        probe_id, probe = store.begin()
        probe.rmdir()
        _complete(tmp_path, probe_id)  # the second's base id is now taken by a complete backup
        backup_id, _partial = store.begin()
        if backup_id.split("-")[0] == probe_id:
            break
    else:  # pragma: no cover
        pytest.fail("never two begin() calls within one second")
    assert backup_id != probe_id
    assert backup_id.startswith(probe_id + "-")


def test_commit_renames_the_partial_dir(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    backup_id, partial = store.begin()
    (partial / "payload").write_text("data", encoding="utf-8")
    (partial / MANIFEST).write_text(json.dumps({"format": FORMAT}), encoding="utf-8")
    final = store.commit(backup_id, partial)
    assert final == tmp_path / backup_id
    assert not partial.exists()
    assert (final / "payload").read_text(encoding="utf-8") == "data"
    assert store.complete() == [backup_id]
    assert store.incomplete() == []


def test_commit_never_overwrites_an_existing_backup(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    backup_id, partial = store.begin()
    (partial / "new").write_text("new", encoding="utf-8")
    existing = _complete(tmp_path, backup_id)
    (existing / "old").write_text("old", encoding="utf-8")
    with pytest.raises(BackupError, match="not overwritten"):
        store.commit(backup_id, partial)
    assert (existing / "old").read_text(encoding="utf-8") == "old"
    assert not (existing / "new").exists()
    assert (partial / "new").read_text(encoding="utf-8") == "new"  # the new backup stays where it was


def test_commit_refuses_when_the_final_name_is_a_dangling_symlink(tmp_path: Path) -> None:
    store = BackupStore(tmp_path / "root")
    backup_id, partial = store.begin()
    (store.root / backup_id).symlink_to(tmp_path / "nowhere")
    with pytest.raises(BackupError):
        store.commit(backup_id, partial)
    assert partial.is_dir()
    assert not (tmp_path / "nowhere").exists()


def test_complete_and_incomplete_listings(tmp_path: Path) -> None:
    store = BackupStore(tmp_path)
    _complete(tmp_path, "20260101T000000Z")
    _complete(tmp_path, "20260102T000000Z-1")
    (tmp_path / "20260103T000000Z").mkdir()  # interrupted: no manifest
    (tmp_path / ".20260104T000000Z.partial").mkdir()
    (tmp_path / "not-a-backup").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / MANIFEST).write_text("{}", encoding="utf-8")
    assert store.complete() == ["20260101T000000Z", "20260102T000000Z-1"]
    assert store.incomplete() == [".20260104T000000Z.partial", "20260103T000000Z"]


def test_listings_of_a_missing_root_are_empty(tmp_path: Path) -> None:
    store = BackupStore(tmp_path / "absent")
    assert store.complete() == []
    assert store.incomplete() == []
    with pytest.raises(BackupError, match="no complete backup"):
        store.path("latest")


@pytest.mark.parametrize("name", ["../../etc", "foo", "latest/..", "", "20260101T000000Z/../..",
                                  "20260101T000000", "20260101T000000Z-1000", "/etc"])
def test_path_refuses_a_non_id(tmp_path: Path, name: str) -> None:
    _complete(tmp_path, BACKUP_ID)
    with pytest.raises(BackupError, match="not a backup id"):
        BackupStore(tmp_path).path(name)


def test_path_refuses_a_symlinked_id_dir_pointing_outside(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = _complete(tmp_path / "elsewhere", BACKUP_ID)
    (root / BACKUP_ID).symlink_to(outside, target_is_directory=True)
    store = BackupStore(root)
    with pytest.raises(BackupError, match="outside the backup root"):
        store.path(BACKUP_ID)
    assert store.complete() == []
    with pytest.raises(BackupError, match="no complete backup"):
        store.path("latest")


def test_path_refuses_a_symlinked_id_dir_even_inside_the_root(tmp_path: Path) -> None:
    real = _complete(tmp_path, "20260101T000000Z")
    (tmp_path / "20260102T000000Z").symlink_to(real, target_is_directory=True)
    store = BackupStore(tmp_path)
    with pytest.raises(BackupError, match="refused"):
        store.path("20260102T000000Z")
    assert store.path("latest") == real


def test_path_refuses_an_id_dir_without_manifest(tmp_path: Path) -> None:
    (tmp_path / BACKUP_ID).mkdir()
    with pytest.raises(BackupError, match="no manifest"):
        BackupStore(tmp_path).path(BACKUP_ID)


def test_path_refuses_an_absent_id(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="no backup"):
        BackupStore(tmp_path).path(BACKUP_ID)


def test_path_latest_is_the_newest_complete_backup(tmp_path: Path) -> None:
    _complete(tmp_path, "20260101T000000Z")
    newest_complete = _complete(tmp_path, "20260301T120000Z")
    _complete(tmp_path, "20260201T000000Z-1")
    (tmp_path / "20260401T000000Z").mkdir()  # newer, but interrupted
    (tmp_path / ".20260501T000000Z.partial").mkdir()
    store = BackupStore(tmp_path)
    assert store.path("latest") == newest_complete
    assert store.path("20260201T000000Z-1") == tmp_path / "20260201T000000Z-1"


def test_path_latest_prefers_the_suffixed_id_of_the_same_second(tmp_path: Path) -> None:
    _complete(tmp_path, "20260101T000000Z")
    second = _complete(tmp_path, "20260101T000000Z-1")
    assert BackupStore(tmp_path).path("latest") == second


def test_path_latest_with_ten_or_more_backups_in_one_second(tmp_path: Path) -> None:
    _complete(tmp_path, "20260101T000000Z-9")
    newest = _complete(tmp_path, "20260101T000000Z-10")
    assert BackupStore(tmp_path).path("latest") == newest


def test_id_pattern_refuses_a_trailing_newline(tmp_path: Path) -> None:
    assert not ID_PATTERN.fullmatch(BACKUP_ID + "\n")
    _complete(tmp_path, BACKUP_ID + "\n")
    assert BackupStore(tmp_path).complete() == []
    with pytest.raises(BackupError, match="not a backup id"):
        BackupStore(tmp_path).path(BACKUP_ID + "\n")


# --------------------------------------------------------------------------- inside / safe_name


@pytest.mark.parametrize("parts", [("..",), ("a", "..", ".."), ("../x",), ("/etc/passwd",), ("a", "/etc"),
                                   ("a/../../b",)])
def test_inside_refuses_escapes(tmp_path: Path, parts: tuple[str, ...]) -> None:
    base = tmp_path / "base"
    base.mkdir()
    with pytest.raises(BackupError, match="outside"):
        inside(base, *parts)


def test_inside_refuses_a_symlink_leading_out(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "link").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(BackupError):
        inside(base, "link", "secret")


@pytest.mark.parametrize(("parts", "rel"), [(("a",), "a"), (("a", "b.tar"), "a/b.tar"), (("a/../b",), "a/../b"),
                                            (("x", ".."), "x/..")])
def test_inside_keeps_paths_within_the_base(tmp_path: Path, parts: tuple[str, ...], rel: str) -> None:
    assert inside(tmp_path, *parts) == tmp_path / rel


@pytest.mark.parametrize("name", ["../../etc/passwd", "..", ".", "", "/", ".hidden", "a/b\\c", "...x",
                                  "é€ naïve", "name with spaces", "\x00\n", "-" * 500])
def test_safe_name_is_a_plain_file_name(name: str) -> None:
    cleaned = safe_name(name)
    assert cleaned
    assert "/" not in cleaned
    assert "\\" not in cleaned
    assert not cleaned.startswith(".")
    assert cleaned not in {".", ".."}
    assert len(cleaned) <= 120
    assert all(c.isascii() and (c.isalnum() or c in "_.-") for c in cleaned)


def test_safe_name_examples() -> None:
    assert safe_name("../../etc/passwd") == "_.._etc_passwd"
    assert safe_name("emails_v2") == "emails_v2"
    assert safe_name("my-volume.data") == "my-volume.data"
    assert safe_name("..") == "_"
    assert safe_name("") == "_"
    assert safe_name("a b") == "a_b"


def test_safe_name_result_stays_inside(tmp_path: Path) -> None:
    for name in ["../../etc/passwd", "..", "/abs", "a/../../b"]:
        assert inside(tmp_path, safe_name(name) + ".tar").parent == tmp_path


# --------------------------------------------------------------------------- validate_backup


def test_a_clean_backup_is_valid(tmp_path: Path) -> None:
    path, manifest = _make_backup(tmp_path)
    v = validate_backup(path)
    assert v.ok, v.problems
    assert v.problems == []
    assert v.subject == f"backup {BACKUP_ID}"
    assert v.facts["volumes"] == manifest["volumes"]
    assert v.facts["qdrant"] == manifest["qdrant"]["collections"]
    assert v.facts["skipped"] == {"postgres": "not configured"}
    assert "postgres" not in v.facts


def test_a_flipped_byte_is_a_sha256_problem(tmp_path: Path) -> None:
    path, _ = _make_backup(tmp_path)
    target = path / "config" / "config.yaml"
    data = bytearray(target.read_bytes())
    data[3] ^= 0x01
    target.write_bytes(bytes(data))
    v = validate_backup(path)
    assert not v.ok
    assert [(p.component, p.severity) for p in v.problems] == [("config/config.yaml", "CRIT")]
    assert "sha256 differs" in v.problems[0].message


def test_a_flipped_byte_in_an_archive_is_reported_once(tmp_path: Path) -> None:
    path, _ = _make_backup(tmp_path)
    target = path / "qdrant" / "c.snapshot"
    data = bytearray(target.read_bytes())
    data[600] ^= 0xFF  # inside the first member's data
    target.write_bytes(bytes(data))
    v = validate_backup(path)
    assert not v.ok
    assert [p.component for p in v.problems] == ["qdrant/c.snapshot"]
    assert "sha256 differs" in v.problems[0].message


def test_a_truncated_file_is_a_size_problem(tmp_path: Path) -> None:
    path, manifest = _make_backup(tmp_path)
    target = path / "volumes" / "v.tar"
    size = target.stat().st_size
    target.write_bytes(target.read_bytes()[:1000])
    v = validate_backup(path)
    assert not v.ok
    crit = _crit(v)
    assert [p.component for p in crit] == ["volumes/v.tar"]
    assert crit[0].message == f"size 1000 bytes, manifest says {size}"
    assert manifest["volumes"][0]["archive"] == "volumes/v.tar"


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    path, _ = _make_backup(tmp_path)
    (path / "qdrant" / "c.snapshot").unlink()
    v = validate_backup(path)
    assert not v.ok
    assert [(p.component, p.message, p.severity) for p in v.problems] == [("qdrant/c.snapshot", "missing", "CRIT")]


def test_an_unlisted_file_is_only_a_warning(tmp_path: Path) -> None:
    path, _ = _make_backup(tmp_path)
    (path / "config" / "stray.txt").write_text("left here", encoding="utf-8")
    v = validate_backup(path)
    assert v.ok
    assert [(p.component, p.message, p.severity) for p in v.problems] == [
        ("config/stray.txt", "not in the manifest", "WARN")]


def test_a_volume_archive_with_another_member_count_is_critical(tmp_path: Path) -> None:
    path, manifest = _make_backup(tmp_path)
    real = manifest["volumes"][0]["members"]
    manifest["volumes"][0]["members"] = real + 1  # the archive itself (and its checksum) is intact
    _write_manifest(path, manifest)
    v = validate_backup(path)
    assert not v.ok
    assert [p.component for p in v.problems] == ["volumes/v.tar"]
    assert v.problems[0].message == f"{real} archive members, manifest says {real + 1}"


def test_an_unreadable_snapshot_is_critical(tmp_path: Path) -> None:
    path, manifest = _make_backup(tmp_path)
    (path / "qdrant" / "c.snapshot").write_bytes(b"this is not a tar archive at all" * 40)
    manifest["files"] = _listing(path)  # checksums agree: only reading the archive can tell
    _write_manifest(path, manifest)
    v = validate_backup(path)
    assert not v.ok
    assert [p.component for p in v.problems] == ["qdrant/c.snapshot"]
    assert "snapshot not readable" in v.problems[0].message


def test_a_truncated_archive_listed_consistently_is_critical(tmp_path: Path) -> None:
    path, manifest = _make_backup(tmp_path)
    target = path / "qdrant" / "c.snapshot"
    target.write_bytes(target.read_bytes()[:700])  # cut inside the first member's data
    manifest["files"] = _listing(path)
    _write_manifest(path, manifest)
    v = validate_backup(path)
    assert not v.ok
    assert [p.component for p in v.problems] == ["qdrant/c.snapshot"]


@pytest.mark.parametrize("manifest", [{"format": "es-doctor-backup/0", "files": []}, {"files": []}, [FORMAT], "x"])
def test_a_manifest_of_another_format_is_refused(tmp_path: Path, manifest: Any) -> None:
    (tmp_path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BackupError, match="not an es-doctor backup manifest"):
        validate_backup(tmp_path)


def test_an_unparsable_or_absent_manifest_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="unreadable manifest"):
        validate_backup(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(BackupError, match="unreadable manifest"):
        validate_backup(tmp_path)


def test_a_manifest_listing_a_file_outside_is_reported_not_read(tmp_path: Path) -> None:
    path, manifest = _make_backup(tmp_path / "root")
    outside = tmp_path / "root" / "outside"
    outside.write_text("secret", encoding="utf-8")
    # the entry matches the outside file exactly: reading it would make it look fine
    manifest["files"].append({"path": "../outside", "bytes": outside.stat().st_size, "sha256": _sha(outside)})
    manifest["files"].append({"path": "/etc/hostname", "bytes": 1, "sha256": "0" * 64})
    _write_manifest(path, manifest)
    v = validate_backup(path)
    assert not v.ok
    refused = [p for p in v.problems if p.component == "manifest"]
    assert len(refused) == 2
    assert all("outside" in p.message and "refused" in p.message for p in refused)
    assert {p.component for p in v.problems} == {"manifest"}


def test_a_manifest_archive_path_outside_is_never_read(tmp_path: Path) -> None:
    path, manifest = _make_backup(tmp_path / "root")
    members = _tar(tmp_path / "root" / "outside.tar", {"x": b"x"})
    # if the archive outside were read, its member count would agree with the manifest
    manifest["volumes"].append({"volume": "w", "archive": "../outside.tar", "members": members})
    _write_manifest(path, manifest)
    v = validate_backup(path)
    assert not v.ok
    assert [p.message for p in v.problems if p.component == "manifest" and "outside" in p.message]


def test_a_manifest_of_the_wrong_shape_is_a_clear_error(tmp_path: Path) -> None:
    path, manifest = _make_backup(tmp_path / "root")
    manifest["files"].append({"bytes": 1})
    _write_manifest(path, manifest)
    with pytest.raises(BackupError, match="malformed manifest"):
        validate_backup(path)


# --------------------------------------------------------------------------- scan_archive


def test_scan_archive_reports_exactly_the_damaged_files(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "data").mkdir(parents=True)
    (src / "data" / "good.json").write_text(json.dumps({"ok": [1, 2, 3]}), encoding="utf-8")
    (src / "data" / "bad.json").write_text('{"ok": [1, 2', encoding="utf-8")
    (src / "data" / "notes.txt").write_text("{ not json, but not a .json file", encoding="utf-8")
    _sqlite_db(src / "data" / "good.db")
    broken = _sqlite_db(src / "data" / "broken.db")
    raw = bytearray(broken.read_bytes())
    assert raw.startswith(b"SQLite format 3\x00")
    assert len(raw) > 4096
    raw[100:4096] = b"\xff" * (4096 - 100)
    broken.write_bytes(bytes(raw))
    archive = tmp_path / "volume.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(src, arcname=".")
    problems = scan_archive(archive)
    assert len(problems) == 2, problems
    by_name = {p.split(":", 1)[0]: p for p in problems}
    assert set(by_name) == {"data/bad.json", "data/broken.db"}
    assert "not valid JSON" in by_name["data/bad.json"]
    assert "SQLite integrity check" in by_name["data/broken.db"]


def test_scan_archive_of_intact_files_is_clean(tmp_path: Path) -> None:
    db = _sqlite_db(tmp_path / "one.db", rows=5)
    second = _sqlite_db(tmp_path / "two.sqlite", rows=500)
    archive = tmp_path / "ok.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(db, arcname="one.db")
        tar.add(second, arcname="nested/two.sqlite")
        info = tarfile.TarInfo("empty.json")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"[]"))
    assert scan_archive(archive) == []


def test_scan_archive_checks_sqlite_by_content_not_by_name(tmp_path: Path) -> None:
    broken = _sqlite_db(tmp_path / "x")
    raw = bytearray(broken.read_bytes())
    raw[100:4096] = b"\xff" * (4096 - 100)
    archive = tmp_path / "a.tar"
    _tar(archive, {"store/state.bin": bytes(raw), "store/empty.json": b""})
    problems = scan_archive(archive)
    assert sorted(p.split(":", 1)[0] for p in problems) == ["store/empty.json", "store/state.bin"]


# --------------------------------------------------------------------------- compare


def _recorded() -> dict[str, Any]:
    return {
        "postgres": {"database": "app", "dump": "postgres/app.dump", "tables": {
            "public.tasks": {"rows": 10, "md5": "a" * 32},
            "public.users": {"rows": 3, "md5": "b" * 32},
        }},
        "qdrant": {"embedded": False, "collections": {
            "emails": {"snapshot": "qdrant/emails.snapshot", "points": 10, "sha256_points": "c" * 64,
                       "vector_size": 4, "distance": "Cosine"},
        }},
    }


def _live(tables: dict[str, Any], collections: dict[str, Any]) -> Validation:
    v = Validation("live data")
    v.facts["postgres"] = {"tables": tables}
    v.facts["qdrant"] = collections
    return v


def test_compare_equal_is_empty() -> None:
    m = _recorded()
    live = _live(dict(m["postgres"]["tables"]),
                 {"emails": {"points": 10, "sha256_points": "c" * 64, "status": "green"}})
    assert compare(m, live) == []


def test_compare_reports_a_missing_table_and_a_changed_md5() -> None:
    m = _recorded()
    live = _live({"public.tasks": {"rows": 10, "md5": "d" * 32}},
                 {"emails": {"points": 10, "sha256_points": "c" * 64}})
    out = compare(m, live)
    assert out == ["table public.tasks: 10 rows, md5 dddddddd (backup: 10 rows, md5 aaaaaaaa)",
                   "table public.users: missing (backup: 3 rows)"]


def test_compare_reports_a_changed_point_hash_and_count() -> None:
    m = _recorded()
    tables = dict(m["postgres"]["tables"])
    changed = compare(m, _live(tables, {"emails": {"points": 10, "sha256_points": "e" * 64}}))
    assert changed == ["collection emails: 10 points (backup: 10), content differs"]
    fewer = compare(m, _live(tables, {"emails": {"points": 9, "sha256_points": "c" * 64}}))
    assert fewer == ["collection emails: count differs"]


def test_compare_with_no_live_facts_reports_every_table_missing() -> None:
    out = compare(_recorded(), Validation("live data"))
    assert out == ["table public.tasks: missing (backup: 10 rows)", "table public.users: missing (backup: 3 rows)"]


def test_compare_of_a_backup_without_postgres_or_qdrant() -> None:
    manifest = {"format": FORMAT, "postgres": None, "qdrant": None}
    assert compare(manifest, _live({"public.tasks": {"rows": 1, "md5": "f" * 32}}, {})) == []


# --------------------------------------------------------------------------- Validation


def test_validation_with_warnings_only_is_ok() -> None:
    v = Validation("x")
    assert v.ok
    v.add("volumes", "not checked", "WARN")
    v.add("config", "doubtful", "WARN")
    assert v.ok
    d = v.as_dict()
    assert d["ok"] is True
    assert d["subject"] == "x"
    assert d["problems"] == [{"component": "volumes", "severity": "WARN", "message": "not checked"},
                             {"component": "config", "severity": "WARN", "message": "doubtful"}]


def test_validation_with_one_crit_is_not_ok() -> None:
    v = Validation("x", notes=["note"])
    v.add("volumes", "not checked", "WARN")
    v.add("qdrant", "damaged")
    v.facts["n"] = 1
    assert not v.ok
    d = v.as_dict()
    assert d["ok"] is False
    assert d["facts"] == {"n": 1}
    assert d["notes"] == ["note"]
    assert d["problems"][1] == {"component": "qdrant", "severity": "CRIT", "message": "damaged"}
    assert str(v.problems[1]) == "CRIT qdrant: damaged"
    json.dumps(d)  # serialisable as it is


def test_compare_vectors_within_float_noise_only() -> None:
    m = _recorded()
    m["qdrant"]["collections"]["emails"]["vector_sum"] = 12.5
    tables = dict(m["postgres"]["tables"])

    def live(vector_sum: float) -> Validation:
        return _live(tables, {"emails": {"points": 10, "sha256_points": "c" * 64, "vector_sum": vector_sum}})

    assert compare(m, live(12.5 + 3e-7)) == [], "a re-normalised float32 is the same vector"
    changed = compare(m, live(13.1))
    assert len(changed) == 1 and "the vectors differ" in changed[0]


def test_compare_of_a_live_backup_with_bounded_collection_facts() -> None:
    """--live, and the collection never held still: its facts are bounds, checked as such."""
    m = _recorded()
    m["qdrant"]["collections"]["emails"].update(approximate=True, points_at_least=8)
    tables = dict(m["postgres"]["tables"])
    within = compare(m, _live(tables, {"emails": {"points": 9, "sha256_points": "e" * 64}}))
    assert within == []
    outside = compare(m, _live(tables, {"emails": {"points": 12, "sha256_points": "e" * 64}}))
    assert outside == ["collection emails: 12 points (backup, taken live: between 8 and 10)"]


def test_restore_lock_need_counts_objects_not_their_data() -> None:
    from es_doctor.backup.restore import restore_lock_need

    toc = "\n".join([
        ";",
        "; Archive created at 2026-12-07",
        "5; 2615 16385 SCHEMA - many emailsender",
        "215; 1259 16387 TABLE many t0 emailsender",
        "214; 1259 16386 SEQUENCE many t0_id_seq emailsender",
        "3340; 0 0 SEQUENCE OWNED BY many t0_id_seq emailsender",
        "3186; 2604 16390 DEFAULT many t0 id emailsender",
        "3333; 0 16387 TABLE DATA many t0 emailsender",
        "3342; 0 0 SEQUENCE SET many t0_id_seq emailsender",
        "3188; 2606 16392 CONSTRAINT many t0 t0_pkey emailsender",
        "3190; 1259 16400 INDEX public tasks_title_idx emailsender",
    ])
    tables, locks = restore_lock_need(toc)
    # schema 1, table 9, sequence 4, default 1, constraint 5, index 5; data, set and owned-by none
    assert (tables, locks) == (1, 25)
