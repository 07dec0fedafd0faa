"""Every file shipped under captures/ and scenarios/ is free of unscrubbed secrets."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from replay.capture import CaptureWriter, find_secrets

REPO = Path(__file__).resolve().parents[1]
SHIPPED_DIRS = ("captures", "scenarios")


def shipped_files(root: Path = REPO) -> list[Path]:
    files: list[Path] = []
    for d in SHIPPED_DIRS:
        base = root / d
        if base.is_dir():
            files += sorted(p for p in base.rglob("*") if p.is_file())
    return files


def scan(files: list[Path]) -> list[str]:
    found: list[str] = []
    for f in files:
        found += find_secrets(f)
    return found


def test_shipped_files_hold_no_secrets() -> None:
    found = scan(shipped_files())
    assert found == [], "unscrubbed secrets in shipped files:\n" + "\n".join(found)


def test_scan_catches_planted_secrets(tmp_path: Path) -> None:
    (tmp_path / "captures").mkdir()
    (tmp_path / "scenarios" / "deep").mkdir(parents=True)
    key = "a1" * 32
    sig = "b2" * 64
    clean = tmp_path / "captures" / "clean.jsonl.gz"
    with CaptureWriter(clean, {"source": "proxy"}) as w:
        w.write({"t": 0, "conn": "rest-1", "dir": "out", "kind": "rest", "type": "GET /v1/account/balances",
                 "data": {"headers": {"X-VALR-API-KEY": key, "X-VALR-SIGNATURE": sig}}})
    assert scan(shipped_files(tmp_path)) == []  # the writer scrubbed them
    leak = tmp_path / "captures" / "leak.jsonl"
    leak.write_text(json.dumps({"data": {"headers": {"X-VALR-API-KEY": key}}}) + "\n")
    sneaky = tmp_path / "scenarios" / "deep" / "s.toml"
    sneaky.write_text(f'[bot]\nsignature = "{sig}"\n')
    packed = tmp_path / "captures" / "packed.jsonl.gz"
    packed.write_bytes(gzip.compress(json.dumps({"payload": {"apiKey": key}}).encode()))
    found = scan(shipped_files(tmp_path))
    assert any(str(leak) in f for f in found)
    assert any(str(sneaky) + ":2:" in f for f in found)
    assert any(str(packed) in f for f in found)
    assert not any(str(clean) in f for f in found)
