"""``valr-replay show``: timeline formatting, labels, filters and the command's I/O."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from replay.capture import CaptureWriter
from replay.cli import main
from replay.show import OrderLabels, format_record, parse_time, record_mentions, short_id, timeline

A = "0198379c-5d70-7bae-a3da-4a756ef9d12e"
B = "0198379c-5d71-7bae-a3da-4a756e000abc"


def R(t_ms: float, conn: str, d: str, kind: str, typ: str, data) -> dict:
    wall = f"2026-11-24T16:07:{28 + int(t_ms // 1000):02d}.{int(t_ms) % 1000:03d}Z"
    return {"t": int(t_ms * 1_000_000), "wall": wall, "conn": conn, "dir": d, "kind": kind, "type": typ, "data": data}


def trace() -> list[dict]:
    return [
        R(1, "run", "local", "meta", "RUN_START", {"seed": 7}),
        R(2, "trade-1", "out", "ws", "PLACE_LIMIT_ORDER", {
            "type": "PLACE_LIMIT_ORDER", "clientMsgId": "c1",
            "payload": {"side": "BUY", "quantity": "0.01", "price": "950000", "pair": "BTCZAR",
                        "customerOrderId": "HB-1"}}),
        R(3, "exchange", "local", "event", "CommandSubmitted", {
            "ts_ms": 1, "account": "demo", "command": "place_limit", "order_id": A, "customer_order_id": "HB-1",
            "conn": "trade-1"}),
        R(4, "trade-1", "in", "ws", "PLACE_LIMIT_WS_RESPONSE", {"type": "PLACE_LIMIT_WS_RESPONSE", "clientMsgId": "c1",
                                                                 "data": {"orderId": A}}),
        R(5, "account-1", "in", "ws", "OPEN_ORDERS_UPDATE", {"type": "OPEN_ORDERS_UPDATE", "data": []}),
        R(6, "client", "local", "client", "ORDER_STATE", {
            "client_order_id": "HB-1", "exchange_order_id": A, "side": "buy", "price": "950000", "amount": "0.01",
            "from": "OPEN", "to": "CANCELED", "reason": "missing from OPEN_ORDERS_UPDATE", "where": "cached"}),
        R(7, "rest-1", "out", "rest", "POST /v1/orders/limit", {
            "method": "POST", "path": "/v1/orders/limit", "query": "", "headers": {},
            "body": {"side": "SELL", "quantity": "0.01", "price": "960000", "pair": "BTCZAR",
                     "customerOrderId": "HB-2"}}),
        R(8, "rest-1", "in", "rest", "POST /v1/orders/limit", {"status": 202, "headers": {}, "body": {"id": B}}),
        R(1009, "account-1", "in", "ws", "ORDER_STATUS_UPDATE", {"type": "ORDER_STATUS_UPDATE", "data": {
            "orderId": B, "orderStatusType": "Placed", "customerOrderId": "HB-2", "originalPrice": "960000",
            "remainingQuantity": "0.01"}}),
        R(1010, "account-1", "in", "ws", "OPEN_ORDERS_UPDATE", {"type": "OPEN_ORDERS_UPDATE", "data": [
            {"orderId": A, "side": "buy", "customerOrderId": "HB-1"},
            {"orderId": B, "side": "sell", "customerOrderId": "HB-2"}]}),
        R(1011, "exchange", "local", "event", "OrderStatusChanged", {"ts_ms": 5, "account": "demo", "order": {
            "order_id": A, "status": "Cancelled", "customer_order_id": "HB-1", "side": "buy", "price": "950000",
            "remaining_quantity": "0.01"}}),
        R(1234.5671, "account-1", "in", "ws", "BALANCE_UPDATE", {"type": "BALANCE_UPDATE", "data": {
            "currency": {"shortName": "BTC"}, "available": "1", "reserved": "0", "total": "1"}}),
    ]


def write(path: Path, records: list[dict], tail: str = "") -> Path:
    with CaptureWriter(path, {"source": "simulated", "pairs": ["BTCZAR"]}) as w:
        for r in records:
            w.write(r)
    if tail:
        with open(path, "a") as fh:
            fh.write(tail)
    return path


def all_labels(records: list[dict]) -> OrderLabels:
    labels = OrderLabels()
    for r in records:
        labels.observe(r)
    labels.compact()
    return labels


# --------------------------------------------------------------------------- pure formatting


def test_format_record_parts() -> None:
    recs = trace()
    labels = all_labels(recs)
    line = format_record(recs[-1], labels)
    assert line.lstrip().startswith("+1234.567ms")
    assert "account-1" in line and " <- " in line and "BALANCE_UPDATE" in line
    assert "available=1" in line
    assert " -> " in format_record(recs[1], labels)
    assert " · " in format_record(recs[0], labels)


def test_order_summaries_and_labels() -> None:
    recs = trace()
    labels = all_labels(recs)
    lines = [format_record(r, labels) for r in recs]
    assert re.search(r"PLACE_LIMIT_ORDER\s+msg=c1 o1 cid=HB-1 BUY 0\.01@950000", lines[1])
    assert "o1 id=…f9d12e" in lines[3]  # the reply's orderId is linked to HB-1's label
    assert "n=0" in lines[4]
    assert "OPEN→CANCELED" in lines[5] and "[cached]" in lines[5] and "o1" in lines[5]
    assert "o2 cid=HB-2 SELL 0.01@960000" in lines[6]
    assert "202 o2 id=…000abc" in lines[7]  # REST reply id linked to the request's customer id
    assert "o2" in lines[8] and "Placed" in lines[8] and "0.01@960000" in lines[8]
    assert "n=2 [o1 id=…f9d12e, o2 id=…000abc]" in lines[9]
    assert "o1" in lines[10] and "Cancelled" in lines[10]
    assert len(labels) == 2


def test_labels_stable_first_seen_and_merge() -> None:
    labels = OrderLabels()
    assert labels.label("x") == "o1"
    assert labels.label("y") == "o2"
    assert labels.label("x") == "o1"
    assert labels.link("cid-z", "z") == "o3"
    assert labels.get("z") == "o3"
    # x and y turn out to be one order: merged into the earlier label, then renumbered
    assert labels.link("y", "x") == "o1"
    labels.compact()
    assert labels.get("y") == "o1" and labels.get("z") == "o2" and len(labels) == 2


def test_format_record_accepts_plain_label_dict_and_no_labels() -> None:
    r = trace()[3]
    assert "o7 id=…f9d12e" in format_record(r, {A: "o7"})
    assert "id=…f9d12e" in format_record(r, None)


def test_short_id() -> None:
    assert short_id(A) == "…f9d12e"
    assert short_id("HB-1") == "HB-1"


def test_record_mentions() -> None:
    recs = trace()
    labels = all_labels(recs)
    place = recs[1]  # carries only the customer id
    assert record_mentions(place, "HB-1")
    assert record_mentions(place, A, labels)  # linked through the reply
    assert not record_mentions(place, A)  # without labels only literal ids
    assert record_mentions(place, "o1", labels)
    assert record_mentions(recs[9], "f9d12e")  # a short id as shown
    assert record_mentions(recs[10], A)  # nested event order_id
    assert record_mentions(recs[5], A)  # client exchange_order_id
    assert not record_mentions(recs[11], A, labels)


def test_timeline_marks_centre_and_clips() -> None:
    recs = trace()
    lines = timeline(recs, 5, before=2, after=1)
    assert len(lines) == 4
    assert lines[2].startswith(">> ") and "ORDER_STATE" in lines[2]
    assert all(ln.startswith("   ") for i, ln in enumerate(lines) if i != 2)
    assert timeline(recs, 0, before=5, after=0)[0].startswith(">> ")
    assert len(timeline(recs, len(recs) - 1, before=1, after=9)) == 2
    assert timeline([], 0) == []
    # labels as show gives them (o2 for HB-2 even if the window starts later)
    assert "o2" in timeline(recs, 9, before=0, after=0)[0]


def test_parse_time() -> None:
    assert parse_time("1234.5") == ("offset", 1234.5e6)
    assert parse_time("+1234.5ms") == ("offset", 1234.5e6)
    assert parse_time("2s") == ("offset", 2e9)
    how, v = parse_time("2026-11-24T16:07:29.009Z")
    assert how == "wall" and v % 1000 == pytest.approx(9)
    with pytest.raises(ValueError, match="--around"):
        parse_time("yesterday")


# --------------------------------------------------------------------------- command


def run(*args: str):
    return CliRunner().invoke(main, ["show", *args, "--no-color"])


@pytest.mark.parametrize("name", ["t.jsonl", "t.jsonl.gz"])
def test_show_lists_every_record(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, trace())
    res = run(str(path))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert len(lines) == len(trace())
    assert "RUN_START" in lines[0] and "BALANCE_UPDATE" in lines[-1]
    assert res.stderr == ""


def test_show_filters(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", trace())
    out = run(str(path), "--type", "OPEN_ORDERS_UPDATE").stdout.splitlines()
    assert len(out) == 2 and all("OPEN_ORDERS_UPDATE" in ln for ln in out)
    out = run(str(path), "--type", "open_*", "--type", "BALANCE_UPDATE").stdout.splitlines()
    assert len(out) == 3
    out = run(str(path), "--kind", "rest").stdout.splitlines()
    assert len(out) == 2 and all("/v1/orders/limit" in ln for ln in out)
    out = run(str(path), "--order", "HB-2").stdout.splitlines()
    assert [ln.split()[3] for ln in out] == ["POST", "POST", "ORDER_STATUS_UPDATE", "OPEN_ORDERS_UPDATE"]
    by_id = run(str(path), "--order", A).stdout.splitlines()
    by_label = run(str(path), "--order", "o1").stdout.splitlines()
    assert by_id == by_label and len(by_id) == 6  # place, command, reply, client, list, event
    out = run(str(path), "--limit", "3").stdout.splitlines()
    assert len(out) == 3


def test_show_around(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", trace())
    out = run(str(path), "--around", "1010", "--window", "0.0015").stdout.splitlines()
    assert [ln.split()[0] for ln in out] == ["+1009.000ms", "+1010.000ms", "+1011.000ms"]
    # the same instant as an ISO wall time (record 1 is at 16:07:28.001)
    out = run(str(path), "--around", "2026-11-24T16:07:29.010Z", "--window", "0.0015").stdout.splitlines()
    assert [ln.split()[0] for ln in out] == ["+1009.000ms", "+1010.000ms", "+1011.000ms"]
    res = run(str(path), "--around", "soon")
    assert res.exit_code == 2 and "--around" in res.stderr


def test_show_reports_problems_and_continues(tmp_path: Path) -> None:
    recs = trace()
    path = write(tmp_path / "t.jsonl", recs[:3], tail='{"t": 1, "conn": broken\n')
    with open(path, "a") as fh:
        import json

        fh.write(json.dumps(recs[3]) + "\n")
        fh.write(json.dumps({"t": 1}) + "\n")
    res = run(str(path))
    assert res.exit_code == 0
    assert len(res.stdout.splitlines()) == 4
    assert f"{path}:5:" in res.stderr and "invalid JSON" in res.stderr
    assert f"{path}:7:" in res.stderr and "'conn'" in res.stderr
    # with --limit the rest of the file is still checked
    res = run(str(path), "--limit", "1")
    assert len(res.stdout.splitlines()) == 1 and f"{path}:7:" in res.stderr


def test_show_bad_input_exits_2(tmp_path: Path) -> None:
    res = run(str(tmp_path / "missing.jsonl"))
    assert res.exit_code == 2 and "missing.jsonl" in res.stderr and "no such file" in res.stderr
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format":"nope","version":1}\n')
    res = run(str(bad))
    assert res.exit_code == 2 and "bad.jsonl" in res.stderr and "format" in res.stderr
    newer = tmp_path / "newer.jsonl"
    newer.write_text('{"format":"valr-replay-capture","version":9}\n')
    res = run(str(newer))
    assert res.exit_code == 2 and "version 9" in res.stderr


def test_show_colour_marks_labels(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", trace())
    res = CliRunner().invoke(main, ["show", str(path), "--color", "--type", "PLACE_LIMIT_ORDER"])
    assert res.exit_code == 0
    assert "\x1b[" in res.stdout and "o1" in res.stdout


def test_in_memory_records_with_dataclasses() -> None:
    from decimal import Decimal

    from replay.exchange.events import OpenOrdersChanged, OrderStatusChanged
    from replay.exchange.model import OrderStatus, OrderType, OrderView, Side, TimeInForce

    ov = OrderView(order_id=A, account="demo", pair="BTCZAR", side=list(Side)[0], order_type=list(OrderType)[0],
                   time_in_force=list(TimeInForce)[0], price=Decimal("950000"), original_quantity=Decimal("0.01"),
                   remaining_quantity=Decimal("0.01"), status=list(OrderStatus)[0], created_ms=1, updated_ms=2,
                   customer_order_id="HB-1")
    recs = [R(1, "exchange", "local", "event", "OrderStatusChanged", OrderStatusChanged(1, "demo", ov)),
            R(2, "exchange", "local", "event", "OpenOrdersChanged", OpenOrdersChanged(2, "demo", (ov,)))]
    lines = timeline(recs, 1, before=1, after=0)
    assert "o1 id=…f9d12e cid=HB-1" in lines[0] and "0.01@950000" in lines[0]
    assert "n=1 [o1 id=…f9d12e]" in lines[1]
    assert record_mentions(recs[1], "HB-1")


@pytest.mark.parametrize("args, named", [
    (["--order", "nonexistent"], "--order nonexistent"),
    (["--type", "NO_SUCH_TYPE"], "--type NO_SUCH_TYPE"),
    (["--kind", "nokind"], "--kind nokind"),
    (["--around", "99999", "--window", "0.5"], "--around 99999 --window 0.5"),
    (["--type", "OPEN_ORDERS_UPDATE", "--order", "HB-1", "--around", "1s", "--window", "0"],
     "--type OPEN_ORDERS_UPDATE --order HB-1 --around 1s --window 0"),
])
def test_show_says_when_nothing_matched_and_exits_1(tmp_path: Path, args: list[str], named: str) -> None:
    path = write(tmp_path / "t.jsonl", trace())
    res = run(str(path), *args)
    assert res.exit_code == 1, res.output
    assert res.stdout == ""
    assert f"no record in {path} matches {named}" in res.stderr


def test_show_of_an_empty_capture_says_so(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.jsonl", [])
    res = run(str(path))
    assert res.exit_code == 1 and res.stdout == "" and f"no records in {path}" in res.stderr
    # --limit does not hide that records matched
    res = run(str(write(tmp_path / "t.jsonl", trace())), "--type", "OPEN_ORDERS_UPDATE", "--limit", "0")
    assert res.exit_code == 0 and res.stderr == ""


def test_show_help_states_the_exit_status_and_readme_agrees_on_around() -> None:
    res = CliRunner().invoke(main, ["show", "--help"])
    assert "Exit status: 0 when at least one record was selected; 1 when none was" in " ".join(res.output.split())
    assert "--around TIME" in res.output
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert "`valr-replay show CAPTURE [--order ID] [--type T] [--around TIME]`" in readme
