"""Backups of the stack, their validation, the live data's validation, and the restore steps.

The rooms: :mod:`~es_doctor.backup.store` (ids, the root, manifests), :mod:`~es_doctor.backup.writer`
(:class:`Backup`), :mod:`~es_doctor.backup.validate` (a backup's files and manifest),
:mod:`~es_doctor.backup.live` (the live data) and :mod:`~es_doctor.backup.restore`. Every part that
talks to the stack takes the run's :class:`~es_doctor.probes.session.ProbeSession`: none builds a client
or a session of its own, and none closes the one it is given.
"""

from __future__ import annotations

from es_doctor.backup.live import scan_archive, validate_live
from es_doctor.backup.restore import (
    check_fits,
    compare,
    pg_restore_file,
    require_write_freeze,
    restore_embedded_qdrant,
    restore_postgres,
    restore_qdrant,
    restore_volumes,
)
from es_doctor.backup.store import (
    FORMAT,
    ID_PATTERN,
    MANIFEST,
    BackupError,
    BackupStore,
    CancelledError,
    id_order,
    inside,
    is_backup_id,
    other_target,
    read_manifest,
    safe_name,
    sha256_file,
)
from es_doctor.backup.validate import (
    Problem,
    Validation,
    check_archive,
    dump_row_counts,
    manifest_problems,
    referenced_files,
    restorable_manifest,
    validate_backup,
    verified_file,
)
from es_doctor.backup.writer import Backup, backup_volumes, helper_image, target_identity

__all__ = [
    "FORMAT",
    "ID_PATTERN",
    "MANIFEST",
    "Backup",
    "BackupError",
    "BackupStore",
    "CancelledError",
    "Problem",
    "Validation",
    "backup_volumes",
    "check_archive",
    "check_fits",
    "compare",
    "dump_row_counts",
    "helper_image",
    "id_order",
    "inside",
    "is_backup_id",
    "manifest_problems",
    "other_target",
    "pg_restore_file",
    "read_manifest",
    "referenced_files",
    "require_write_freeze",
    "restorable_manifest",
    "restore_embedded_qdrant",
    "restore_postgres",
    "restore_qdrant",
    "restore_volumes",
    "safe_name",
    "scan_archive",
    "sha256_file",
    "target_identity",
    "validate_backup",
    "validate_live",
    "verified_file",
]
