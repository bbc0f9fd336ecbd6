"""The pure parts of bounded I/O: JSON depth, Retry-After, the head-and-tail output cap, the
writable-directory proof."""

from __future__ import annotations

from pathlib import Path

import pytest

from es_doctor.errors import CantCreateError, ExitStatus
from es_doctor.probes.http import MAX_RETRY_AFTER_S, parse_json, retry_after
from es_doctor.statedir import ensure_writable_dir
from es_doctor.tools import _Capped


def test_json_depth_is_limited_without_recursion() -> None:
    with pytest.raises(ValueError, match="nested deeper than 128"):
        parse_json("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError, match="nested deeper than 3"):
        parse_json('{"a": {"b": {"c": {}}}}', max_depth=3)
    assert parse_json('{"a": {"b": {"c": 1}}}', max_depth=3) == {"a": {"b": {"c": 1}}}
    # brackets inside strings (escaped quotes included) do not count
    assert parse_json(r'["[[[[\"[[[", "]]]"]', max_depth=1) == ['[[[["[[[', "]]]"]
    with pytest.raises(ValueError):
        parse_json("{not json")


def test_retry_after_seconds_dates_and_cap() -> None:
    assert retry_after({"Retry-After": "7"}, 0.2) == 7.0
    assert retry_after({"retry-after": "7"}, 0.2) == 7.0
    assert retry_after({"Retry-After": "86400"}, 0.2) == MAX_RETRY_AFTER_S
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.2) == 0.0
    assert retry_after({"Retry-After": "Fri, 31 Dec 2100 23:59:59 GMT"}, 0.2) == MAX_RETRY_AFTER_S
    assert retry_after({"Retry-After": "later"}, 0.4) == 0.4
    assert retry_after({}, 0.4) == 0.4


def test_capped_output_keeps_head_and_tail() -> None:
    cap = _Capped(10)
    for piece in (b"abc", b"defgh", b"ijklmnop", b"qrstuvwxyz"):
        cap.add(piece)
    assert cap.dropped == 26 - 10
    assert cap.text() == "abcde\n[… 16 bytes of output dropped …]\nvwxyz"
    small = _Capped(100)
    small.add(b"hello")
    assert small.text() == "hello" and small.dropped == 0


def test_a_directory_under_a_file_cannot_be_written(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CantCreateError, match=str(blocker / "state")) as caught:
        ensure_writable_dir(blocker / "state", "state directory")
    assert caught.value.exit_status is ExitStatus.CANT_CREATE
    made = ensure_writable_dir(tmp_path / "new" / "state", "state directory")
    assert made.is_dir() and made.stat().st_mode & 0o777 == 0o700
    assert list(made.iterdir()) == []  # the proof leaves nothing behind
