"""The spool on disk: ordered segments, survives reopening, one writer at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from database.spool import Spool, SpoolError, read_lines


def _lines(*texts: str) -> list[bytes]:
    return [t.encode() + b"\n" for t in texts]


def test_segments_replay_in_append_order(tmp_path: Path) -> None:
    """Appends go to the tail; rotation and adoption keep the order; a reopen finds it all."""
    spool = Spool(tmp_path, max_segment_bytes=10)
    spool.open()
    spool.append(_lines("a1", "a2", "a3", "a4"))  # 12 bytes: the next append rotates
    spool.append(_lines("b1"))
    extra = tmp_path / "overflow.jsonl"
    extra.write_bytes(b"c1\n")
    spool.adopt(extra)
    spool.close()

    again = Spool(tmp_path)
    again.open()
    seen = []
    while (head := again.head()) is not None:
        seen += [line.decode() for _, line, _ in read_lines(head)]
        again.remove(head)
    again.close()
    assert seen == ["a1", "a2", "a3", "a4", "b1", "c1"]
    assert again.size_bytes == 0
    assert not list(tmp_path.glob("segment-*"))


def test_second_spool_on_one_directory_is_refused(tmp_path: Path) -> None:
    """An exclusive lock keeps two writers out of one spool."""
    first = Spool(tmp_path)
    first.open()
    with pytest.raises(SpoolError, match="in use"):
        Spool(tmp_path).open()
    first.close()
    second = Spool(tmp_path)
    second.open()  # free again once the first is closed
    second.close()


def test_a_torn_last_line_is_flagged(tmp_path: Path) -> None:
    """A last line without its newline (a crash mid-write) is reported as incomplete."""
    path = tmp_path / "segment-000000000001.jsonl"
    path.write_bytes(b'{"k":1}\n{"k":2}\n{"k"')
    assert [(n, complete) for n, _, complete in read_lines(path)] == [
        (0, True),
        (1, True),
        (2, False),
    ]
    assert [n for n, _, _ in read_lines(path, start=1)] == [1, 2]


def test_only_the_head_may_be_removed(tmp_path: Path) -> None:
    """Removing anything but the oldest segment would reorder the spool: refused."""
    spool = Spool(tmp_path, max_segment_bytes=1)
    spool.open()
    spool.append(_lines("x"))
    spool.append(_lines("y"))
    first, second = spool.segments()
    with pytest.raises(SpoolError):
        spool.remove(second)
    spool.remove(first)
    assert spool.segments() == [second]
    spool.close()
