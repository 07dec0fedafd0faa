"""The ``ws_error`` perturbation: account-WebSocket commands answered with VALR's rate-limit
reply (or not at all) instead of being executed; and the reference connector surviving it."""

from __future__ import annotations

import asyncio
import json

import pytest

from replay.runner import run_scenario
from replay.scenario import loads_scenario
from replay.schedule import DeliverySchedule

from conftest import make_config, recv

ASK = {"side": "SELL", "quantity": "0.02", "price": "1500000", "pair": "BTCZAR", "postOnly": True}


def place(msg_id: str, cid: str) -> str:
    return json.dumps({"type": "PLACE_LIMIT_ORDER", "clientMsgId": msg_id, "payload": dict(ASK, customerOrderId=cid)})


def cancel(msg_id: str, cid: str) -> str:
    return json.dumps({"type": "CANCEL_LIMIT_ORDER", "clientMsgId": msg_id,
                       "payload": {"customerOrderId": cid, "pair": "BTCZAR"}})


async def connect(server, client_factory):
    ws = await client_factory(server).ws()
    await recv(ws, "AUTHENTICATED")
    await recv(ws, "OPEN_ORDERS_UPDATE")  # the connect-time snapshot
    return ws


def open_ids(server) -> list[str]:
    return [o.customer_order_id for o in server.exchange.open_orders("maker", "BTCZAR")]


def is_reply(msg_id: str):
    return lambda m: m.get("clientMsgId") == msg_id


async def test_ws_error_429_refuses_a_placement_then_the_next_goes_through(make_server, client_factory):
    schedule = DeliverySchedule.from_spec({}, [
        {"name": "place-429", "match": {"type": "PLACE_LIMIT_ORDER", "nth": 1}, "ws_error": 429}])
    server = await make_server(make_config(), schedule=schedule)
    ws = await connect(server, client_factory)

    await ws.send(place("m-1", "c-1"))
    refused = await recv(ws, is_reply("m-1"))
    # exactly what the server's own write limit sends (codec.rate_limit_exceeded)
    assert refused == {"type": "RATE_LIMIT_EXCEEDED", "data": {"requestType": "PLACE_LIMIT_ORDER"},
                       "clientMsgId": "m-1"}
    await asyncio.sleep(0.05)
    assert open_ids(server) == []  # not placed
    assert server.exchange.find_order("maker", customer_order_id="c-1") is None

    await ws.send(place("m-2", "c-2"))
    ack = await recv(ws, is_reply("m-2"))
    assert ack["type"] == "PLACE_LIMIT_WS_RESPONSE"
    await recv(ws, lambda m: m["type"] == "ORDER_STATUS_UPDATE" and m["data"]["orderStatusType"] == "Placed")
    assert open_ids(server) == ["c-2"]
    assert [(a.name, a.msg_type) for a in schedule.applied] == [("place-429", "PLACE_LIMIT_ORDER")]
    assert schedule.applied[0].conn.startswith("account-")


async def test_ws_error_429_refuses_a_cancel_and_the_order_stays_open(make_server, client_factory):
    schedule = DeliverySchedule.from_spec({}, [
        {"match": {"type": "CANCEL_LIMIT_ORDER", "nth": 1}, "ws_error": {"status": 429}}])
    server = await make_server(make_config(), schedule=schedule)
    ws = await connect(server, client_factory)
    await ws.send(place("m-1", "c-1"))
    assert (await recv(ws, is_reply("m-1")))["type"] == "PLACE_LIMIT_WS_RESPONSE"
    await recv(ws, lambda m: m["type"] == "ORDER_STATUS_UPDATE" and m["data"]["orderStatusType"] == "Placed")

    await ws.send(cancel("m-2", "c-1"))
    refused = await recv(ws, is_reply("m-2"))
    assert refused == {"type": "RATE_LIMIT_EXCEEDED", "data": {"requestType": "CANCEL_LIMIT_ORDER"},
                       "clientMsgId": "m-2"}
    await asyncio.sleep(0.05)
    assert open_ids(server) == ["c-1"]  # not cancelled

    await ws.send(cancel("m-3", "c-1"))  # the second cancel is not matched (nth = 1)
    assert (await recv(ws, is_reply("m-3")))["type"] == "CANCEL_ORDER_WS_RESPONSE"
    await recv(ws, lambda m: m["type"] == "ORDER_STATUS_UPDATE" and m["data"]["orderStatusType"] == "Cancelled")
    assert open_ids(server) == []
    assert [a.msg_type for a in schedule.applied] == ["CANCEL_LIMIT_ORDER"]


async def test_ws_error_0_swallows_the_command(make_server, client_factory):
    schedule = DeliverySchedule.from_spec({}, [{"match": {"type": "PLACE_LIMIT_ORDER"}, "ws_error": 0}])
    server = await make_server(make_config(), schedule=schedule)
    ws = await connect(server, client_factory)
    await ws.send(place("m-1", "c-1"))
    await ws.send(json.dumps({"type": "PING"}))
    assert (await recv(ws))["type"] == "PONG"  # answered; the placement before it was not
    with pytest.raises(asyncio.TimeoutError):
        await recv(ws, is_reply("m-1"), timeout=0.3)
    assert open_ids(server) == []
    assert len(schedule.applied) == 1


async def test_injected_faults_do_not_count_against_the_write_limit(make_server, client_factory):
    schedule = DeliverySchedule.from_spec({}, [{"match": {"type": "PLACE_LIMIT_ORDER", "nth": [1, 2]},
                                                "ws_error": 429}])
    server = await make_server(make_config(server={"ws_rate_limits_per_second": {"place": 1}}), schedule=schedule)
    ws = await connect(server, client_factory)
    for i in (1, 2, 3):
        await ws.send(place(f"m-{i}", f"c-{i}"))
    replies = [await recv(ws, is_reply(f"m-{i}")) for i in (1, 2, 3)]
    assert [r["type"] for r in replies] == ["RATE_LIMIT_EXCEEDED", "RATE_LIMIT_EXCEEDED", "PLACE_LIMIT_WS_RESPONSE"]
    assert len(schedule.applied) == 2


# --- the reference connector under ws_error --------------------------------------------------------

SCENARIO = """\
[scenario]
name = "ws-429-on-placement"
duration = "6s"
seed = 3

[latency]
default = "1ms..4ms"
engine = "1ms..4ms"

[[perturb]]
name = "place-429"
match = { type = "PLACE_LIMIT_ORDER", nth = 1 }
ws_error = 429

[[perturb]]
name = "cancel-429"
match = { type = "CANCEL_LIMIT_ORDER", nth = 1 }
ws_error = 429

[bot]
policy = "reconcile"
order_refresh_time = "1s"
"""


def test_reference_connector_survives_ws_429_on_placement_and_cancel():
    scenario = loads_scenario(SCENARIO, "ws_429.toml")
    result = run_scenario(scenario, keep_records=True)
    applied = [r["data"] for r in result.records if r["kind"] == "meta" and r["type"] == "PERTURBATION"]
    assert sorted((a["name"], a["msg_type"]) for a in applied) == [
        ("cancel-429", "CANCEL_LIMIT_ORDER"), ("place-429", "PLACE_LIMIT_ORDER")]
    assert all(a["conn"].startswith("account-") for a in applied)
    assert result.perturbations == {"place-429": 1, "cancel-429": 1}
    # the refusals reached the bot as RATE_LIMIT_EXCEEDED, naming its commands
    refusals = [r["data"] for r in result.records if r["kind"] == "ws" and r["type"] == "RATE_LIMIT_EXCEEDED"]
    assert sorted(d["data"]["requestType"] for d in refusals) == ["CANCEL_LIMIT_ORDER", "PLACE_LIMIT_ORDER"]
    # and the run went to its end: the bot shut down, every check was judged
    types = [r["type"] for r in result.records if r["kind"] == "meta"]
    assert "SHUTDOWN_DONE" in types and types[-1] == "RUN_END"
    assert result.sim_seconds >= 6 and result.checks
