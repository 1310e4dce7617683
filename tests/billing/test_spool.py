"""The usage spool: records are readable from the file as soon as they are appended (a crash
after that loses nothing), segments roll over when full, torn tails are skipped."""

from __future__ import annotations

import os
from pathlib import Path

from ailb.billing.records import UsageRecord
from ailb.spool import Spool, read_segment


def rec(i: int) -> UsageRecord:
    return UsageRecord(
        request_id=f"req_{i:06d}",
        ts=1_700_000_000.0 + i,
        key_id="k",
        model="m",
        deployment="d",
        prompt_tokens=i,
        completion_tokens=2 * i,
        cost_usd=i / 1000,
        latency_ms=1.5,
        status=200,
        user="ü-ser" if i % 2 else None,
    )


def test_appended_records_are_in_the_file_before_any_close(tmp_path):
    spool = Spool(str(tmp_path))
    spool.open()
    for i in range(100):
        assert spool.append(rec(i)) is None
    (path,) = [os.path.join(tmp_path, n) for n in os.listdir(tmp_path)]
    # another reader (the next process after a crash) sees every record already
    assert read_segment(path) == [rec(i) for i in range(100)]
    assert list(spool.orphans()) == []  # still ours: locked
    closed = spool.rotate()
    assert closed == path and list(spool.orphans()) == [path]
    assert read_segment(path) == [rec(i) for i in range(100)]
    spool.close()


def test_a_full_segment_rolls_over(tmp_path):
    spool = Spool(str(tmp_path), segment_bytes=1000)
    spool.open()
    closed = [c for i in range(50) if (c := spool.append(rec(i))) is not None]
    assert len(closed) >= 3
    spool.rotate()
    got = [r for path in sorted(spool.orphans()) for r in read_segment(path)]
    assert got == [rec(i) for i in range(50)]
    spool.close()


def test_a_torn_last_record_and_a_damaged_one_are_skipped(tmp_path):
    spool = Spool(str(tmp_path))
    spool.open()
    for i in range(3):
        spool.append(rec(i))
    path = spool.path
    assert path is not None
    spool.close()
    data = bytearray(Path(path).read_bytes())
    frame = len(data) // 3  # every record here encodes to the same length
    data[frame + 10 : frame + 14] = b"\xc1\xc1\xc1\xc1"  # 0xc1: never valid MessagePack
    torn = frame * 2 + 4 + (frame - 4) // 2
    data[torn:] = b"\0" * (len(data) - torn + 100)  # the last cut mid-copy, then the zero tail
    Path(path).write_bytes(data)
    assert read_segment(path) == [rec(0)]


def test_a_frame_cut_short_by_the_end_of_the_file_is_skipped(tmp_path):
    spool = Spool(str(tmp_path))
    spool.open()
    spool.append(rec(1))
    spool.append(rec(2))
    path = spool.path
    assert path is not None
    spool.close()
    Path(path).write_bytes(Path(path).read_bytes()[:-5])
    assert read_segment(path) == [rec(1)]


def test_segments_of_json_lines_from_earlier_versions_are_still_read(tmp_path):
    path = tmp_path / "usage-x-00000001.jsonl"
    good = b'["req_1",1.0,"k","m",null,1,1,0.0,1.0,200,false,false,null,null,null,""]\n'
    path.write_bytes(good + good.replace(b"req_1", b"req_2")[:30] + b"\0" * 100)
    assert [r.request_id for r in read_segment(str(path))] == ["req_1"]  # torn line left out
    spool = Spool(str(tmp_path))
    spool.open()
    assert list(spool.orphans()) == [str(path)]  # picked up after an upgrade
    spool.close()


def test_a_full_disk_is_an_error_not_a_crash(tmp_path, monkeypatch):
    import errno

    import ailb.spool as spool_module

    spool = Spool(str(tmp_path))
    spool.open()
    spool.append(rec(1))

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "posix_fallocate", no_space)
    closed = spool.rotate()  # the next segment cannot be made: not an error yet
    assert closed is not None and read_segment(closed) == [rec(1)]
    try:
        spool.append(rec(2))
    except OSError as e:
        assert e.errno == errno.ENOSPC
    else:
        raise AssertionError("an append with no segment must fail")
    monkeypatch.undo()
    spool.append(rec(3))  # room again: a new segment
    spool.rotate()
    assert sorted(r.request_id for p in spool.orphans() for r in read_segment(p)) == [
        "req_000001",
        "req_000003",
    ]
    spool.close()


def test_a_full_disk_when_a_full_segment_rolls_over(tmp_path, monkeypatch):
    """The next segment is made before the full one is closed: with no room for it, the append
    fails and the full segment stays current, so every closed segment is reported exactly once
    and every record written is in exactly one of them."""
    import errno

    import ailb.spool as spool_module

    spool = Spool(str(tmp_path), segment_bytes=1000)
    spool.open()
    closed: list[str] = []
    written = []
    i = 0
    while spool.used + 200 < spool._size:  # nearly full
        assert spool.append(rec(i)) is None
        written.append(i)
        i += 1

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "posix_fallocate", no_space)
    for _ in range(3):
        try:
            if (c := spool.append(rec(i))) is not None:
                closed.append(c)
            written.append(i)
        except OSError as e:
            assert e.errno == errno.ENOSPC
        i += 1
    assert closed == []  # nothing closed behind the caller's back
    monkeypatch.undo()
    for _ in range(5):
        if (c := spool.append(rec(i))) is not None:
            closed.append(c)
        written.append(i)
        i += 1
    assert len(closed) == 1
    closed.append(spool.rotate())
    got = [r for path in closed for r in read_segment(path)]
    assert got == [rec(n) for n in written]
    assert sorted(spool.orphans()) == sorted(closed)
    spool.close()
