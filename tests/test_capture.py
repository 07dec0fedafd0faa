"""The capture format: writer, streaming reader, gzip, damage handling, scrubbing."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import signal
import subprocess
import sys
import tracemalloc
from decimal import Decimal
from pathlib import Path

import pytest

from replay.capture import (
    FORMAT,
    SCRUBBED,
    VERSION,
    CaptureError,
    CaptureProblem,
    CaptureWriter,
    TraceRecorder,
    find_secrets,
    open_capture,
    read_capture,
    scrub_record,
)
from replay.clock import Clock
from replay.exchange.model import Balance

REPO = Path(__file__).resolve().parents[1]
KEY = "0123456789abcdef" * 4  # 64 hex: the shape of a VALR API key
SIG = "fedcba9876543210" * 8  # 128 hex: the shape of an HMAC-SHA512 signature


def rec(i: int, **data) -> dict:
    return {
        "t": i * 1_000_000,
        "wall": "2026-11-24T16:07:28.900Z",
        "conn": "account-1",
        "dir": "in",
        "kind": "ws",
        "type": "OPEN_ORDERS_UPDATE",
        "data": {"type": "OPEN_ORDERS_UPDATE", "data": [], **data},
    }


def header(**extra) -> dict:
    return {"source": "simulated", "pairs": ["BTCZAR"], **extra}


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("name", ["cap.jsonl", "cap.jsonl.gz"])
def test_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / "deep" / "dir" / name
    records = [rec(i, n=i) for i in range(20)]
    with CaptureWriter(path, header(seed=7)) as w:
        for r in records:
            w.write(r)
    hdr, got, problems = read_capture(path)
    assert got == records
    assert problems == []
    assert hdr["format"] == FORMAT and hdr["version"] == VERSION
    assert hdr["source"] == "simulated" and hdr["venue"] == "valr" and hdr["pairs"] == ["BTCZAR"]
    assert hdr["upstream"] is None and hdr["seed"] == 7
    assert hdr["created_at"].endswith("Z") and hdr["created_at"].startswith("20")
    assert "X-VALR-API-KEY" in hdr["scrubbed"] and "apiKey" in hdr["scrubbed"]
    raw = path.read_bytes()
    if name.endswith(".gz"):
        assert raw[:2] == b"\x1f\x8b"
        raw = gzip.decompress(raw)  # a standard gzip file
    lines = raw.decode().splitlines()
    assert len(lines) == 21 and json.loads(lines[1]) == records[0]


def test_created_at_kept_when_given_and_decimals_serialised(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with CaptureWriter(path, header(created_at="2026-01-01T00:00:00.000Z")) as w:
        w.write({**rec(1), "data": {"price": Decimal("1.50"), "bal": Balance("BTC", Decimal("1"), Decimal("0"))}})
    hdr, got, _ = read_capture(path)
    assert hdr["created_at"] == "2026-01-01T00:00:00.000Z"
    assert got[0]["data"]["price"] == "1.50"
    assert got[0]["data"]["bal"]["currency"] == "BTC"


def test_writer_rejects_bad_source_and_write_after_close(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="source"):
        CaptureWriter(tmp_path / "x.jsonl", {"source": "guess"})
    w = CaptureWriter(tmp_path / "y.jsonl", header())
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write(rec(1))


def test_reader_iterates_twice_and_reports_each_problem_once(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with CaptureWriter(path, header()) as w:
        w.write(rec(1))
    with open(path, "a") as fh:
        fh.write("not json\n")
    seen: list[CaptureProblem] = []
    reader = open_capture(path, on_problem=seen.append)
    assert len(list(reader)) == 1
    assert len(list(reader)) == 1
    assert len(reader.problems) == 1
    assert len(seen) == 2  # the callback hears it on each pass


# --------------------------------------------------------------------------- damage


def test_corrupt_middle_line_reported_and_rest_read(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with CaptureWriter(path, header()) as w:
        for i in range(5):
            w.write(rec(i))
    lines = path.read_text().splitlines()
    lines[3] = lines[3][:20]  # record index 2 -> file line 4
    path.write_text("\n".join(lines) + "\n")
    hdr, got, problems = read_capture(path)
    assert [r["t"] for r in got] == [0, 1_000_000, 3_000_000, 4_000_000]
    assert len(problems) == 1
    p = problems[0]
    assert p.line_no == 4 and p.path == str(path)
    assert "invalid JSON" in p.message
    assert str(p).startswith(f"{path}:4:")


def test_truncated_last_line_plain(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with CaptureWriter(path, header()) as w:
        for i in range(3):
            w.write(rec(i))
    with open(path, "a") as fh:
        fh.write('{"t": 5, "conn": "acc')
    _, got, problems = read_capture(path)
    assert len(got) == 3
    assert len(problems) == 1 and problems[0].line_no == 5 and "truncated" in problems[0].message


def test_complete_last_line_without_newline_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with CaptureWriter(path, header()) as w:
        w.write(rec(1))
    with open(path, "a") as fh:
        fh.write(json.dumps(rec(2)))
    _, got, problems = read_capture(path)
    assert len(got) == 2 and problems == []


@pytest.mark.parametrize(
    "line, field",
    [
        ({"conn": "a", "dir": "in", "kind": "ws", "type": "X", "data": {}}, "'t'"),
        ({"t": 1, "dir": "in", "kind": "ws", "type": "X", "data": {}}, "'conn'"),
        ({"t": 1, "conn": "a", "kind": "ws", "type": "X", "data": {}}, "'dir'"),
        ({"t": 1, "conn": "a", "dir": "in", "type": "X", "data": {}}, "'kind'"),
        ({"t": 1, "conn": "a", "dir": "in", "kind": "ws", "data": {}}, "'type'"),
        ({"t": 1, "conn": "a", "dir": "in", "kind": "ws", "type": "X"}, "'data'"),
        ({"t": "x", "conn": "a", "dir": "in", "kind": "ws", "type": "X", "data": {}}, "'t'"),
        ({"t": 1, "conn": "a", "dir": "sideways", "kind": "ws", "type": "X", "data": {}}, "'dir'"),
        ([1, 2], "not an object"),
    ],
)
def test_record_missing_or_bad_field_is_a_problem(tmp_path: Path, line, field: str) -> None:
    path = tmp_path / "c.jsonl"
    with CaptureWriter(path, header()) as w:
        w.write(rec(1))
    with open(path, "a") as fh:
        fh.write(json.dumps(line) + "\n")
        fh.write(json.dumps(rec(3)) + "\n")
    _, got, problems = read_capture(path)
    assert [r["t"] for r in got] == [1_000_000, 3_000_000]
    assert len(problems) == 1 and problems[0].line_no == 3
    assert field in problems[0].message


def test_truncated_gzip_reads_up_to_damage(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    w = CaptureWriter(path, header())
    for i in range(50):
        w.write(rec(i, pad="x" * 50))
    size_after_50 = path.stat().st_size
    w.write(rec(50, pad=os.urandom(200).hex()))  # incompressible: its deflate bytes are long
    w.close()
    # cut in the middle of the last line's deflate block (and drop the trailer)
    data = path.read_bytes()
    path.write_bytes(data[: size_after_50 + 20])
    _, got, problems = read_capture(path)
    assert len(got) == 50
    assert len(problems) == 1 and "truncated" in problems[0].message
    assert problems[0].line_no == 52  # after the header and 50 records


def test_corrupt_gzip_reports_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl.gz"
    with CaptureWriter(path, header()) as w:
        for i in range(200):
            w.write(rec(i, pad=f"{i}" * 40))
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid : mid + 40] = b"\xff" * 40
    path.write_bytes(bytes(data))
    _, got, problems = read_capture(path)
    # the records before the damage are read intact; the damage is reported, not raised
    assert 0 < len(got) < 200
    assert [r["t"] for r in got[:10]] == [i * 1_000_000 for i in range(10)]
    assert problems and any("gzip" in p.message for p in problems)


# --------------------------------------------------------------------------- header


def write_raw(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "first, match",
    [
        ('{"format":"other","version":1}', "format"),
        ('{"format":"valr-replay-capture","version":99}', "version 99 is newer"),
        ('{"format":"valr-replay-capture","version":"1"}', "version"),
        ('{"format":"valr-replay-capture","version":1,"source":"made-up"}', "source"),
        ("not json at all", "not valid JSON"),
        ("[1,2,3]", "not a JSON object"),
    ],
)
def test_bad_header_is_capture_error_naming_file(tmp_path: Path, first: str, match: str) -> None:
    path = write_raw(tmp_path / "bad.jsonl", first + "\n" + json.dumps(rec(1)) + "\n")
    with pytest.raises(CaptureError, match=match) as exc:
        open_capture(path)
    assert str(path) in str(exc.value) and "line 1" in str(exc.value)


def test_empty_and_missing_file(tmp_path: Path) -> None:
    empty = write_raw(tmp_path / "empty.jsonl", "")
    with pytest.raises(CaptureError, match="empty file") as exc:
        open_capture(empty)
    assert str(empty) in str(exc.value)
    with pytest.raises(CaptureError, match="no such file"):
        open_capture(tmp_path / "missing.jsonl")
    with pytest.raises(CaptureError, match="directory"):
        open_capture(tmp_path)


def test_older_version_accepted_and_unknown_header_fields_kept(tmp_path: Path) -> None:
    path = write_raw(tmp_path / "v0.jsonl",
                     '{"format":"valr-replay-capture","version":0,"whatever":1}\n' + json.dumps(rec(1)) + "\n")
    hdr, got, problems = read_capture(path)
    assert hdr["whatever"] == 1 and len(got) == 1 and problems == []


def test_gzip_detected_by_content_not_suffix(tmp_path: Path) -> None:
    src = tmp_path / "c.jsonl.gz"
    with CaptureWriter(src, header()) as w:
        w.write(rec(1))
    renamed = tmp_path / "c.jsonl"
    src.rename(renamed)
    _, got, _ = read_capture(renamed)
    assert len(got) == 1


# --------------------------------------------------------------------------- append


@pytest.mark.parametrize("name", ["a.jsonl", "a.jsonl.gz"])
def test_open_append(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with CaptureWriter(path, header(seed=3)) as w:
        w.write(rec(1))
    with CaptureWriter.open_append(path) as w:
        w.write(rec(2, headers={"X-VALR-API-KEY": KEY}))
    hdr, got, problems = read_capture(path)
    assert hdr["seed"] == 3
    assert [r["t"] for r in got] == [1_000_000, 2_000_000] and problems == []
    assert got[1]["data"]["headers"]["X-VALR-API-KEY"] == SCRUBBED


def test_open_append_after_cut_line_keeps_it_one_problem(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl"
    with CaptureWriter(path, header()) as w:
        w.write(rec(1))
    with open(path, "a") as fh:
        fh.write('{"t": 2, "co')
    with CaptureWriter.open_append(path) as w:
        w.write(rec(3))
    _, got, problems = read_capture(path)
    assert [r["t"] for r in got] == [1_000_000, 3_000_000]
    assert len(problems) == 1 and problems[0].line_no == 3


def test_open_append_refuses_damaged_gzip(tmp_path: Path) -> None:
    path = tmp_path / "a.jsonl.gz"
    w = CaptureWriter(path, header())
    w.write(rec(1))
    w._fh.close()  # simulate a killed writer: no gzip trailer  # noqa: SLF001
    w._fh = None  # noqa: SLF001
    with pytest.raises(CaptureError, match="damaged gzip"):
        CaptureWriter.open_append(path)


# --------------------------------------------------------------------------- SIGKILL

CHILD = r"""
import sys
from replay.capture import CaptureWriter
path, n, endless = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
w = CaptureWriter(path, {"source": "simulated"})
i = 0
while True:
    w.write({"t": i, "conn": "account-1", "dir": "in", "kind": "ws", "type": "X", "data": {"i": i, "pad": "p" * 300}})
    i += 1
    if i <= n:
        print(i, flush=True)
    if i == n and not endless:
        sys.stdin.read()  # wait here until killed
"""


@pytest.mark.parametrize("name", ["k.jsonl", "k.jsonl.gz"])
@pytest.mark.parametrize("endless", [False, True])
def test_flush_per_line_survives_sigkill(tmp_path: Path, name: str, endless: bool) -> None:
    path = tmp_path / name
    n = 25
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(n), "1" if endless else "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        for expected in range(1, n + 1):
            line = proc.stdout.readline()
            assert line.strip() == str(expected).encode(), f"child stopped early: {line!r}"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stdin.close()
    hdr, got, problems = read_capture(path)
    assert hdr["format"] == FORMAT
    assert [r["data"]["i"] for r in got[:n]] == list(range(n))
    if endless:
        assert len(got) >= n
    else:
        assert len(got) == n
    assert len(problems) <= 1
    if name.endswith(".gz"):
        # never closed: the stream has no end marker; reported once, not fatal
        assert len(problems) == 1 and "truncated" in problems[0].message
    elif not endless:
        assert problems == []


# --------------------------------------------------------------------------- memory


def test_streaming_reader_memory_stays_flat(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    pad = "z" * 2000
    line = json.dumps({**rec(0), "data": {"pad": pad}}) + "\n"
    n = 50 * 1024 * 1024 // len(line) + 1
    with open(path, "w") as fh:
        fh.write(json.dumps({"format": FORMAT, "version": 1}) + "\n")
        chunk = line * 1000
        for _ in range(n // 1000 + 1):
            fh.write(chunk)
    assert path.stat().st_size > 50 * 1024 * 1024
    tracemalloc.start()
    try:
        count = 0
        reader = open_capture(path)
        for _ in reader:
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count >= n
    assert reader.problems == []
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


def test_gzip_reader_memory_bounded_on_highly_compressible_data(tmp_path: Path) -> None:
    # 40 MB of one record repeated compresses to a few hundred kB: output must be bounded per step
    path = tmp_path / "big.jsonl.gz"
    line = (json.dumps({**rec(0), "data": {"pad": "a" * 4000}}) + "\n").encode()
    n = 40 * 1024 * 1024 // len(line)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write((json.dumps({"format": FORMAT, "version": 1}) + "\n").encode())
        block = line * 500
        for _ in range(n // 500):
            fh.write(block)
    tracemalloc.start()
    try:
        count = sum(1 for _ in open_capture(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == (n // 500) * 500
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"


# --------------------------------------------------------------------------- scrubbing


def test_scrub_secret_headers_case_insensitive_dict_and_pairs() -> None:
    r = {
        "t": 0, "conn": "rest-1", "dir": "out", "kind": "rest", "type": "GET /v1/account/balances",
        "data": {
            "method": "GET",
            "headers": {
                "X-VALR-API-KEY": KEY,
                "x-valr-signature": SIG,
                "X-Valr-Timestamp": "1700000000000",
                "X-VALR-SUB-ACCOUNT-ID": "12345",
                "Content-Type": "application/json",
            },
            "raw_headers": {"headers": [["X-VALR-API-KEY", KEY], ["Accept", "*/*"]]},
        },
    }
    out = scrub_record(r)
    h = out["data"]["headers"]
    assert h["X-VALR-API-KEY"] == SCRUBBED
    assert h["x-valr-signature"] == SCRUBBED
    assert h["X-Valr-Timestamp"] == SCRUBBED
    assert h["X-VALR-SUB-ACCOUNT-ID"] == SCRUBBED
    assert h["Content-Type"] == "application/json"
    assert out["data"]["raw_headers"]["headers"] == [["X-VALR-API-KEY", SCRUBBED], ["Accept", "*/*"]]
    assert r["data"]["headers"]["X-VALR-API-KEY"] == KEY  # input untouched


def test_scrub_authenticate_payload() -> None:
    r = rec(1)
    r["type"] = "AUTHENTICATE"
    r["dir"] = "out"
    r["data"] = {"type": "AUTHENTICATE", "payload": {"apiKey": KEY, "signature": SIG, "timestamp": 1700000000000}}
    out = scrub_record(r)
    assert out["data"]["payload"] == {"apiKey": SCRUBBED, "signature": SCRUBBED, "timestamp": 1700000000000}


def test_scrub_account_ids_anywhere() -> None:
    r = rec(1)
    r["data"] = {
        "type": "OPEN_ORDERS_UPDATE",
        "data": {"accountId": "111", "orders": [{"orderId": "o", "subAccountId": "222"}, {"subaccountId": 333}]},
    }
    out = scrub_record(r)
    d = out["data"]["data"]
    assert d["accountId"] == SCRUBBED
    assert d["orders"][0] == {"orderId": "o", "subAccountId": SCRUBBED}
    assert d["orders"][1] == {"subaccountId": SCRUBBED}


def test_scrub_balances_optional() -> None:
    r = rec(1)
    r["type"] = "BALANCE_UPDATE"
    r["data"] = {"type": "BALANCE_UPDATE",
                 "data": {"currency": {"shortName": "BTC"}, "available": "0.8", "reserved": "0.9", "total": "1.7"}}
    assert scrub_record(r)["data"]["data"]["available"] == "0.8"
    d = scrub_record(r, balances=True)["data"]["data"]
    assert (d["available"], d["reserved"], d["total"]) == (SCRUBBED, SCRUBBED, SCRUBBED)
    assert d["currency"] == {"shortName": "BTC"}
    # a domain event carrying a Balance dataclass is scrubbed too (made plain first)
    ev = {**rec(2), "kind": "event", "data": {"account": "demo", "balance": Balance("BTC", Decimal("1"), Decimal("2"))}}
    b = scrub_record(ev, balances=True)["data"]["balance"]
    assert b == {"currency": "BTC", "available": SCRUBBED, "reserved": SCRUBBED, "updated_ms": 0}


@pytest.mark.parametrize("name", ["w.jsonl", "w.jsonl.gz"])
def test_writer_always_scrubs(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with CaptureWriter(path, header(), scrub_balances=True) as w:
        w.write({**rec(1), "data": {"headers": {"X-VALR-API-KEY": KEY, "X-VALR-SIGNATURE": SIG}}})
        w.write({**rec(2), "data": {"type": "AUTHENTICATE", "payload": {"apiKey": KEY, "signature": SIG}}})
        w.write({**rec(3), "data": {"accountId": "98765", "available": "12.5"}})
    raw = path.read_bytes()
    text = (gzip.decompress(raw) if name.endswith(".gz") else raw).decode()
    assert KEY not in text and SIG not in text and "98765" not in text and "12.5" not in text
    hdr, _, _ = read_capture(path)
    for n in ("X-VALR-API-KEY", "X-VALR-SIGNATURE", "X-VALR-TIMESTAMP", "X-VALR-SUB-ACCOUNT-ID", "apiKey", "signature",
              "accountId", "available"):
        assert n in hdr["scrubbed"]
    assert find_secrets(path) == []


def test_find_secrets_catches_each_kind(tmp_path: Path) -> None:
    cases = {
        "header.jsonl": json.dumps({"data": {"headers": {"X-VALR-API-KEY": KEY}}}),
        "header_lower.jsonl": json.dumps({"data": {"headers": {"x-valr-signature": "abc"}}}),
        "pairs.jsonl": json.dumps({"headers": [["X-VALR-API-KEY", "k"]]}),
        "auth.jsonl": json.dumps({"payload": {"apiKey": "some-key", "signature": "s"}}),
        "sig.txt": f"signature was {SIG}",
        "toml.toml": f'api_key = "{KEY}"',
        "secret.toml": f'api_secret = "{KEY}"',
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text("first line\n" + text + "\n")
        found = find_secrets(path)
        assert found, name
        assert found[0].startswith(f"{path}:2:"), found
    gz = tmp_path / "planted.jsonl.gz"
    gz.write_bytes(gzip.compress(json.dumps({"X-VALR-API-KEY": KEY}).encode()))
    assert find_secrets(gz)


def test_find_secrets_clean_files(tmp_path: Path) -> None:
    path = tmp_path / "clean.jsonl"
    path.write_text(
        '{"format":"valr-replay-capture","version":1,"scrubbed":["X-VALR-API-KEY","X-VALR-SIGNATURE"]}\n'
        '{"data":{"headers":{"X-VALR-API-KEY":"<scrubbed>"},"orderId":"01981786-c482-7bae-a3da-4a756ef9d12e"}}\n'
    )
    assert find_secrets(path) == []
    assert find_secrets(REPO / "captures" / "README.md") == []


# --------------------------------------------------------------------------- trace recorder


async def test_trace_recorder_writes_through_writer(tmp_path: Path) -> None:
    path = tmp_path / "trace.jsonl.gz"
    writer = CaptureWriter(path, header())
    clock = Clock(asyncio.get_running_loop(), epoch_origin_ms=1_700_000_000_000)
    heard: list[dict] = []
    tr = TraceRecorder(clock, writer)
    tr.listeners.append(heard.append)
    tr.record("rest-1", "out", "rest", "GET /v1/account/balances", {"headers": {"X-VALR-API-KEY": KEY}})
    tr.record("account-1", "in", "ws", "AUTHENTICATED", {"type": "AUTHENTICATED"})
    tr.close()
    assert writer.closed
    assert len(tr.records) == 2 and heard == tr.records
    assert tr.records[0]["data"]["headers"]["X-VALR-API-KEY"] == KEY  # in-memory trace untouched
    _, got, problems = read_capture(path)
    assert problems == [] and [r["type"] for r in got] == ["GET /v1/account/balances", "AUTHENTICATED"]
    assert got[0]["data"]["headers"]["X-VALR-API-KEY"] == SCRUBBED
