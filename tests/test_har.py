"""`valr-replay export CAPTURE --har OUT`: captures and run traces as HAR 1.2 (replay/har.py)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from replay import __version__
from replay.capture import CaptureWriter, find_secrets, read_capture
from replay.cli import main
from replay.clock import wall_ms
from replay.har import to_har

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "captures" / "reference_session.jsonl"
RACE = ROOT / "scenarios" / "open_orders_race.toml"


# --- a HAR 1.2 validator (required fields and types of the spec, http://www.softwareishard.com/blog/har-12-spec/)
def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _iso8601(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        return datetime.fromisoformat(v.replace("Z", "+00:00")).tzinfo is not None
    except ValueError:
        return False


def _name_values(items: Any, where: str, problems: list[str]) -> None:
    if not isinstance(items, list):
        problems.append(f"{where}: not a list")
        return
    for i, item in enumerate(items):
        if not (isinstance(item, dict) and isinstance(item.get("name"), str) and isinstance(item.get("value"), str)):
            problems.append(f"{where}[{i}]: not a {{name, value}} of strings")


def har_problems(har: Any) -> list[str]:
    """Everything in ``har`` that breaks the HAR 1.2 structure (required fields and types)."""
    p: list[str] = []
    log = har.get("log") if isinstance(har, dict) else None
    if not isinstance(log, dict):
        return ["log: missing"]
    if log.get("version") != "1.2":
        p.append("log.version is not 1.2")
    creator = log.get("creator")
    if not (isinstance(creator, dict) and isinstance(creator.get("name"), str)
            and isinstance(creator.get("version"), str)):
        p.append("log.creator: needs name and version strings")
    pages = log.get("pages", [])
    page_ids = set()
    if not isinstance(pages, list):
        p.append("log.pages: not a list")
        pages = []
    for i, page in enumerate(pages):
        if not (isinstance(page, dict) and _iso8601(page.get("startedDateTime")) and isinstance(page.get("id"), str)
                and isinstance(page.get("title"), str) and isinstance(page.get("pageTimings"), dict)):
            p.append(f"log.pages[{i}]: needs startedDateTime, id, title, pageTimings")
        else:
            page_ids.add(page["id"])
    entries = log.get("entries")
    if not isinstance(entries, list):
        return p + ["log.entries: not a list"]
    for i, e in enumerate(entries):
        w = f"entries[{i}]"
        if not isinstance(e, dict):
            p.append(f"{w}: not an object")
            continue
        if "pageref" in e and e["pageref"] not in page_ids:
            p.append(f"{w}.pageref: no such page")
        if not _iso8601(e.get("startedDateTime")):
            p.append(f"{w}.startedDateTime: not ISO 8601 with a zone")
        if not _is_num(e.get("time")) or e["time"] < 0:
            p.append(f"{w}.time: not a non-negative number")
        req = e.get("request")
        if not isinstance(req, dict):
            p.append(f"{w}.request: missing")
        else:
            for key, kind in (("method", str), ("url", str), ("httpVersion", str), ("cookies", list),
                              ("headers", list), ("queryString", list)):
                if not isinstance(req.get(key), kind):
                    p.append(f"{w}.request.{key}: not a {kind.__name__}")
            for key in ("headersSize", "bodySize"):
                if not _is_num(req.get(key)):
                    p.append(f"{w}.request.{key}: not a number")
            _name_values(req.get("headers"), f"{w}.request.headers", p)
            _name_values(req.get("queryString"), f"{w}.request.queryString", p)
            if "postData" in req:
                post = req["postData"]
                if not (isinstance(post, dict) and isinstance(post.get("mimeType"), str)):
                    p.append(f"{w}.request.postData: needs mimeType")
        resp = e.get("response")
        if not isinstance(resp, dict):
            p.append(f"{w}.response: missing")
        else:
            for key, kind in (("statusText", str), ("httpVersion", str), ("cookies", list), ("headers", list),
                              ("redirectURL", str)):
                if not isinstance(resp.get(key), kind):
                    p.append(f"{w}.response.{key}: not a {kind.__name__}")
            for key in ("status", "headersSize", "bodySize"):
                if not _is_num(resp.get(key)):
                    p.append(f"{w}.response.{key}: not a number")
            _name_values(resp.get("headers"), f"{w}.response.headers", p)
            content = resp.get("content")
            if not (isinstance(content, dict) and _is_num(content.get("size"))
                    and isinstance(content.get("mimeType"), str)):
                p.append(f"{w}.response.content: needs size and mimeType")
            elif "text" in content and not isinstance(content["text"], str):
                p.append(f"{w}.response.content.text: not a string")
        if not isinstance(e.get("cache"), dict):
            p.append(f"{w}.cache: missing")
        timings = e.get("timings")
        if not isinstance(timings, dict):
            p.append(f"{w}.timings: missing")
        else:
            for key in ("send", "wait", "receive"):
                if not _is_num(timings.get(key)) or timings[key] < -1:
                    p.append(f"{w}.timings.{key}: not a number >= -1")
            for key in ("blocked", "dns", "connect", "ssl"):
                if key in timings and (not _is_num(timings[key]) or timings[key] < -1):
                    p.append(f"{w}.timings.{key}: not a number >= -1")
            spent = sum(v for v in timings.values() if _is_num(v) and v != -1)
            if _is_num(e.get("time")) and abs(spent - e["time"]) > 1e-6:
                p.append(f"{w}.timings: add up to {spent}, time is {e['time']}")
        for k in e:
            if k not in ("pageref", "startedDateTime", "time", "request", "response", "cache", "timings",
                         "serverIPAddress", "connection", "comment") and not k.startswith("_"):
                p.append(f"{w}.{k}: not a HAR field (custom fields start with _)")
    return p


def test_validator_catches_broken_hars() -> None:
    good = to_har(read_capture(REFERENCE)[1]).har
    assert har_problems(good) == []
    bad = json.loads(json.dumps(good))
    entry = bad["log"]["entries"][0]
    del entry["request"]["cookies"]
    entry["startedDateTime"] = "yesterday"
    entry["timings"]["wait"] = -5
    entry["response"]["content"].pop("mimeType")
    bad["log"]["version"] = "1.1"
    found = "\n".join(har_problems(bad))
    for what in ("request.cookies", "startedDateTime", "timings.wait", "response.content", "log.version"):
        assert what in found


# --- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from replay.runner import run_scenario
    from replay.scenario import load_scenario

    trace = tmp_path_factory.mktemp("har") / "run.jsonl"
    run_scenario(load_scenario(RACE), "naive", trace_path=trace)
    return trace


def _export(capture: Path, out: Path) -> tuple[Any, str]:
    cli = CliRunner().invoke(main, ["export", str(capture), "--har", str(out)])
    assert cli.exit_code == 0, cli.output
    return json.loads(out.read_text(encoding="utf-8")), cli.output


def _epoch_ms(rec: dict[str, Any]) -> int:
    ms = wall_ms(rec["wall"])
    assert ms is not None
    return ms


def _assert_matches(har: Any, capture: Path) -> None:
    """Every REST pair and WS frame of the capture is in the HAR, as the capture has it."""
    header, records, problems = read_capture(capture)
    assert problems == []
    entries = har["log"]["entries"]
    rest = [e for e in entries if e["_resourceType"] == "fetch"]
    ws = [e for e in entries if e["_resourceType"] == "websocket"]
    starts = [datetime.fromisoformat(e["startedDateTime"].replace("Z", "+00:00")) for e in entries]
    assert starts == sorted(starts)

    requests = [r for r in records if r["kind"] == "rest" and r["dir"] == "out"]
    responses = {r["conn"]: r for r in records if r["kind"] == "rest" and r["dir"] == "in"}
    assert len(rest) == len(requests) > 0
    by_conn = {e["_conn"]: e for e in rest}
    for req in requests:
        e = by_conn[req["conn"]]
        assert e["request"]["method"] == req["data"]["method"]
        url = e["request"]["url"]
        assert url.split("?")[0].endswith(req["data"]["path"]) and url.startswith("http")
        resp = responses[req["conn"]]
        assert e["response"]["status"] == resp["data"]["status"]
        assert e["startedDateTime"] == req["wall"]
        gap_ms = (resp["t"] - req["t"]) / 1e6
        assert e["time"] == pytest.approx(gap_ms) and e["timings"]["wait"] == pytest.approx(gap_ms)
        body = resp["data"]["body"]
        if body is not None:
            text = e["response"]["content"]["text"]
            assert (text if isinstance(body, str) else json.loads(text)) == body
            assert e["response"]["content"]["size"] == len(text.encode())
        names = {h["name"] for h in e["request"]["headers"]}
        assert names == set(req["data"]["headers"] or {})

    frames: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        if r["kind"] == "ws" and r["dir"] in ("in", "out"):
            frames.setdefault(r["conn"], []).append(r)
    assert {e["_conn"] for e in ws} == set(frames) and len(ws) == len(frames) > 0
    for e in ws:
        assert e["request"]["method"] == "GET" and e["request"]["url"].startswith("ws://")
        assert e["response"]["status"] == 101
        assert {"name": "Upgrade", "value": "websocket"} in e["request"]["headers"]
        msgs = e["_webSocketMessages"]
        expected = frames[e["_conn"]]
        assert len(msgs) == len(expected)
        for msg, rec in zip(msgs, expected, strict=True):
            assert msg["type"] == ("send" if rec["dir"] == "out" else "receive")
            assert msg["opcode"] == 1
            assert json.loads(msg["data"]) == rec["data"]
            # epoch seconds agreeing with the record's wall time (ms) to within a millisecond
            assert abs(msg["time"] * 1000 - _epoch_ms(rec)) < 1.0
        times = [m["time"] for m in msgs]
        assert times == sorted(times)
        connect = next(r for r in records if r["conn"] == e["_conn"] and r["type"] == "CONNECT")
        assert e["startedDateTime"] == connect["wall"]


# --- the shipped proxy capture and a run's trace ----------------------------------------------------
def test_reference_capture_as_har(tmp_path: Path) -> None:
    out = tmp_path / "ref.har"
    har, output = _export(REFERENCE, out)
    assert har_problems(har) == []
    log = har["log"]
    assert log["creator"] == {"name": "valr-replay", "version": __version__}
    assert len(log["pages"]) <= 1
    _assert_matches(har, REFERENCE)
    # a proxy capture: the URL is the recorded upstream's
    assert all(e["request"]["url"].startswith(("http://127.0.0.1:0/", "ws://127.0.0.1:0/"))
               for e in log["entries"])
    messages = sum(len(e.get("_webSocketMessages", [])) for e in log["entries"])
    assert output.strip() == (f"{REFERENCE} -> {out}: {len(log['entries'])} entries (6 REST, 2 WebSocket), "
                              f"{messages} WebSocket messages, 0 records left out")
    assert find_secrets(out) == []
    assert "<scrubbed>" in out.read_text()  # the capture's scrubbed headers stay scrubbed


def test_run_trace_as_har(tmp_path: Path, run_trace: Path) -> None:
    out = tmp_path / "run.har"
    har, output = _export(run_trace, out)
    assert har_problems(har) == []
    _assert_matches(har, run_trace)
    _, records, _ = read_capture(run_trace)
    kinds = Counter(r["kind"] for r in records if r["kind"] not in ("rest", "ws"))
    assert kinds["event"] > 0 and kinds["client"] > 0
    entries = har["log"]["entries"]
    rest = sum(1 for e in entries if e["_resourceType"] == "fetch")
    messages = sum(len(e.get("_webSocketMessages", [])) for e in entries)
    by_kind = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    assert output.strip() == (f"{run_trace} -> {out}: {len(entries)} entries ({rest} REST, "
                              f"{len(entries) - rest} WebSocket), {messages} WebSocket messages, "
                              f"{sum(kinds.values())} records left out ({by_kind})")
    assert find_secrets(out) == []


# --- edge cases of the conversion --------------------------------------------------------------------
def _rec(t_ms: int, conn: str, dir_: str, kind: str, type_: str, data: Any) -> dict[str, Any]:
    origin = 1_800_000_000_000
    from replay.clock import iso_ms
    return {"t": t_ms * 1_000_000, "wall": iso_ms(origin + t_ms), "conn": conn, "dir": dir_, "kind": kind,
            "type": type_, "data": data}


def test_trace_without_headers_gets_neutral_values() -> None:
    key = "c3" * 32
    records = [
        _rec(0, "run", "local", "meta", "RUN_START", {}),
        _rec(1, "rest-1", "out", "rest", "POST /v1/orders/limit",
             {"method": "POST", "path": "/v1/orders/limit", "query": "a=1&b=", "headers": None,
              "body": {"pair": "BTCZAR"}}),
        _rec(4, "rest-1", "in", "rest", "POST /v1/orders/limit", {"status": 202, "headers": {}, "body": {"id": "x"}}),
        _rec(5, "rest-2", "out", "rest", "DELETE /v1/orders/order",
             {"method": "DELETE", "path": "/v1/orders/order", "query": "", "headers": {"X-VALR-API-KEY": key},
              "body": None}),
        _rec(6, "account-1", "out", "ws", "AUTHENTICATE", {"raw": f'{{"apiKey":"{key}"}}'}),
        _rec(7, "account-1", "in", "ws", "AUTHENTICATED", {"type": "AUTHENTICATED"}),
    ]
    res = to_har(records, {"source": "simulated"})
    assert har_problems(res.har) == []
    assert (res.entries, res.rest_entries, res.ws_entries, res.messages, res.left_out) == (3, 2, 1, 2, 1)
    text = json.dumps(res.har)
    assert key not in text  # a hand-made file's secret does not reach the HAR
    post, delete, ws = res.har["log"]["entries"]
    assert post["request"]["url"] == "http://localhost/v1/orders/limit?a=1&b="
    assert post["request"]["headers"] == [] and post["request"]["httpVersion"] == "HTTP/1.1"
    assert post["request"]["queryString"] == [{"name": "a", "value": "1"}, {"name": "b", "value": ""}]
    assert json.loads(post["request"]["postData"]["text"]) == {"pair": "BTCZAR"}
    assert post["request"]["bodySize"] == len(post["request"]["postData"]["text"])
    assert post["response"]["statusText"] == "Accepted" and post["time"] == pytest.approx(3.0)
    assert delete["response"]["status"] == 0 and delete["_error"] == "no response in the capture"
    assert ws["request"]["url"] == "ws://localhost/ws/account"
    assert [m["type"] for m in ws["_webSocketMessages"]] == ["send", "receive"]


# --- the command: bad input, unwritable output ------------------------------------------------------
def _fails(args: list[str]) -> str:
    cli = CliRunner().invoke(main, ["export", *args])
    assert cli.exit_code == 2, cli.output
    lines = [ln for ln in cli.output.splitlines() if ln.strip()]
    assert len(lines) == 1, cli.output
    return lines[0]


def test_export_bad_input(tmp_path: Path) -> None:
    out = tmp_path / "out.har"
    line = _fails([str(tmp_path / "missing.jsonl"), "--har", str(out)])
    assert "missing.jsonl" in line and "no such file" in line

    notes = tmp_path / "notes.txt"
    notes.write_text("just some text\n")
    line = _fails([str(notes), "--har", str(out)])
    assert line.startswith(f"error: {notes}: line 1:") and "not a valr-replay capture" in line

    corrupt = tmp_path / "corrupt.jsonl"
    with CaptureWriter(corrupt, {"source": "simulated"}) as w:
        w.write(_rec(0, "trade-1", "in", "ws", "AUTHENTICATED", {"type": "AUTHENTICATED"}))
    with corrupt.open("a") as fh:
        fh.write("{this is not json}\n")
        fh.write(json.dumps(_rec(1, "trade-1", "in", "ws", "X", {"type": "X"})) + "\n")
    line = _fails([str(corrupt), "--har", str(out)])
    assert line.startswith(f"error: {corrupt}:3:") and "corrupt line" in line

    odd = tmp_path / "odd.jsonl"
    with CaptureWriter(odd, {"source": "simulated"}) as w:
        w.write(_rec(0, "run", "local", "meta", "RUN_START", {}))
        w.write(_rec(1, "rest-1", "in", "rest", "GET /x", {"status": "fine"}))
    line = _fails([str(odd), "--har", str(out)])
    assert line.startswith(f"error: {odd}:3:") and "status" in line
    assert not out.exists()

    line = _fails([str(REFERENCE), "--har", str(tmp_path / "no" / "such" / "dir" / "x.har")])
    assert "cannot write" in line
    line = _fails([str(REFERENCE), "--har", str(tmp_path)])
    assert "is a directory" in line
    assert list(tmp_path.glob("*.tmp")) == []


def test_export_help_says_where_things_go() -> None:
    cli = CliRunner().invoke(main, ["export", "--help"])
    assert cli.exit_code == 0
    for words in ("HAR 1.2", "Import HAR", "_webSocketMessages", "left out", "Network"):
        assert words in cli.output
    assert "export" in CliRunner().invoke(main, ["--help"]).output


def test_export_refuses_to_write_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The written file goes through the shipped-captures secret finder; a leak is not kept."""
    import replay.har

    real = replay.har.to_har

    def leaky(records: Any, header: Any = None) -> Any:
        res = real(records, header)
        res.har["log"]["entries"][0]["request"]["headers"].append({"name": "X-VALR-SIGNATURE", "value": "f0" * 64})
        return res

    monkeypatch.setattr(replay.har, "to_har", leaky)
    out = tmp_path / "leak.har"
    line = _fails([str(REFERENCE), "--har", str(out)])
    assert "not written" in line and "secret" in line and ("f0" * 64) not in line
    assert not out.exists() and list(tmp_path.iterdir()) == []
