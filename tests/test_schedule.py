"""The delivery schedule: latency model, FIFO per type, perturbations, determinism."""

from __future__ import annotations

import random
import statistics

import pytest

import replay.schedule as schedule_module
from replay.latency import (
    Constant,
    LatencyModel,
    LogNormal,
    RoutePattern,
    SpecError,
    Uniform,
    parse_distribution,
    parse_duration,
)
from replay.schedule import (
    WS_COMMAND_TYPES,
    Applied,
    Delivery,
    DeliverySchedule,
    HttpFault,
    Pct,
    WsCommandFault,
    WsError,
)

OOU = "OPEN_ORDERS_UPDATE"
ACK = "PLACE_LIMIT_WS_RESPONSE"
OSU = "ORDER_STATUS_UPDATE"


def snapshot(*ids: str) -> dict:
    return {"type": OOU, "data": [{"orderId": i, "status": "Placed"} for i in ids]}


def ack(oid: str) -> dict:
    return {"type": ACK, "clientMsgId": f"c-{oid}", "data": {"orderId": oid}}


def status(oid: str, st: str = "Placed") -> dict:
    return {"type": OSU, "data": {"orderId": oid, "orderStatusType": st}}


def sched(latency: dict | None = None, perturb: list | None = None, seed: int = 0, start: float = 0.0):
    return DeliverySchedule.from_spec(latency or {}, perturb or [], seed, start)


def drain(s: DeliverySchedule, until: float = 1e9) -> list[Delivery]:
    return s.pop_due(until)


def summary(ds: list[Delivery]) -> list[tuple]:
    return [(round(d.deliver_at, 9), d.conn, d.kind, d.msg_type, repr(d.message)) for d in ds]


# --- durations and distributions --------------------------------------------------------------


@pytest.mark.parametrize(
    "text,seconds",
    [("250ms", 0.25), ("5s", 5.0), ("1m", 60.0), ("1.5s", 1.5), ("500us", 0.0005), ("2h", 7200.0),
     (3, 3.0), (0.25, 0.25), ("0.5", 0.5), ("0", 0.0)],
)
def test_parse_duration_spellings(text, seconds):
    assert parse_duration(text, "k") == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["5 parsecs", "-1s", -2, "", "ms", True, None, [1], "1..2s"])
def test_parse_duration_rejects_bad_values_naming_the_key(bad):
    with pytest.raises(SpecError) as err:
        parse_duration(bad, "scenario.duration")
    assert str(err.value).startswith("scenario.duration: ")


def test_distributions_parse_and_sample_within_bounds():
    rng = random.Random(1)
    assert parse_distribution("5ms") == Constant(0.005, "5ms")
    u = parse_distribution("2ms..8ms")
    assert isinstance(u, Uniform) and (u.low, u.high) == pytest.approx((0.002, 0.008))
    assert all(0.002 <= u.sample(rng) <= 0.008 for _ in range(200))
    assert parse_distribution("2..8ms") == Uniform(0.002, 0.008, "2..8ms")
    ln = parse_distribution("lognormal(mean=5ms, sigma=0.5)")
    assert isinstance(ln, LogNormal)
    draws = [ln.sample(rng) for _ in range(20000)]
    assert statistics.mean(draws) == pytest.approx(0.005, rel=0.05)
    assert max(draws) > 0.015  # a heavy tail: some draws are several times the mean
    capped = parse_distribution("lognormal(mean=5ms, sigma=1.5, max=20ms)")
    assert max(capped.sample(rng) for _ in range(5000)) == pytest.approx(0.020)


@pytest.mark.parametrize(
    "bad", ["8ms..2ms", "lognormal(mean=5ms)", "lognormal(mean=5ms, sigma=x)", "lognormal(mu=1, sigma=1)",
            "fast", "..3ms", True],
)
def test_bad_distribution_names_key(bad):
    with pytest.raises(SpecError) as err:
        parse_distribution(bad, "latency.default")
    assert str(err.value).startswith("latency.default: ")


def test_latency_lookup_order_type_then_conn_kind_then_transport_then_default():
    m = LatencyModel.from_spec(
        {"default": "1ms", "ws": "2ms", "trade": "3ms", OOU: "4ms", "rest": "5ms",
         "POST /v1/orders/limit": "6ms", "engine": {"default": "7ms", "CANCEL_ORDER": "8ms"}}
    )
    rng = random.Random(0)
    assert m.message(rng, "account-1", OOU) == pytest.approx(0.004)
    assert m.message(rng, "trade-1", "AGGREGATED_ORDERBOOK_UPDATE") == pytest.approx(0.003)
    assert m.message(rng, "account-1", OSU) == pytest.approx(0.002)
    assert m.http(rng, "POST", "/v1/orders/limit") == pytest.approx(0.006)
    assert m.http(rng, "GET", "/v1/orders/open") == pytest.approx(0.005)
    assert m.engine(rng, "PLACE_LIMIT") == pytest.approx(0.007)
    assert m.engine(rng, "CANCEL_ORDER") == pytest.approx(0.008)
    m2 = LatencyModel.from_spec({"default": "1ms"})
    assert m2.http(rng, "GET", "/x") == pytest.approx(0.001)  # default also covers REST
    assert m2.engine(rng, "PLACE_LIMIT") == 0.0  # ...but not the engine


def test_route_patterns_match_templates_and_concrete_paths():
    p = RoutePattern.parse("GET /v1/orders/{pair}/orderid/{orderId}")
    assert p.matches("GET", "/v1/orders/{pair}/orderid/{orderId}")
    assert p.matches("get", "/v1/orders/BTCZAR/orderid/abc-1?x=1")
    assert not p.matches("DELETE", "/v1/orders/BTCZAR/orderid/abc-1")
    assert not p.matches("GET", "/v1/orders/BTCZAR/orderid")
    star = RoutePattern.parse("/v1/orders/*")
    assert star.matches("POST", "/v1/orders/limit") and star.matches("DELETE", "/v1/orders/order")


# --- the base schedule -------------------------------------------------------------------------


def test_zero_latency_keeps_production_order_and_reports_next_at():
    s = sched()
    assert s.next_at() is None
    s.push(1.0, "account-1", ACK, ack("a"))
    s.push(1.0, "account-1", OOU, snapshot("a"))
    s.push(0.5, "trade-1", "NEW_TRADE", {"type": "NEW_TRADE"})
    assert s.next_at() == 0.5
    assert s.pop_due(0.4) == []
    got = s.pop_due(1.0)
    assert [d.msg_type for d in got] == ["NEW_TRADE", ACK, OOU]
    assert s.next_at() is None


def test_same_type_stays_fifo_per_connection_but_types_overtake():
    s = sched({"default": "0ms..100ms"}, seed=3)
    for i in range(200):
        t = i * 0.005
        s.push(t, "account-1", OOU, snapshot(str(i)))
        s.push(t, "account-1", ACK, ack(str(i)))
        s.push(t, "account-2", OOU, snapshot(f"b{i}"))
    got = drain(s)
    assert len(got) == 600
    assert [d.deliver_at for d in got] == sorted(d.deliver_at for d in got)
    for conn in ("account-1", "account-2"):
        for typ in (OOU, ACK):
            seq = [d.message for d in got if d.conn == conn and d.msg_type == typ]
            prefix = "b" if conn == "account-2" else ""
            ids = [m["data"][0]["orderId"] if typ == OOU else m["data"]["orderId"] for m in seq]
            assert ids == [f"{prefix}{i}" for i in range(len(ids))], (conn, typ)
    # Different types on one connection do overtake each other: the race exists.
    order = [(d.msg_type, d.message["data"][0]["orderId"] if d.msg_type == OOU else d.message["data"]["orderId"])
             for d in got if d.conn == "account-1"]
    overtaken = sum(1 for i in range(200) if order.index((OOU, str(i))) > order.index((ACK, str(i))))
    assert 0 < overtaken < 200


def test_same_seed_same_schedule_different_seed_differs():
    spec_latency = {"default": "2ms..8ms", OOU: "lognormal(mean=40ms, sigma=0.8)"}
    perturb = [
        {"match": {"type": OOU, "probability": 0.3}, "resend_stale": {"after": "0ms..2s"}},
        {"match": {"type": OSU}, "reorder": {"window": "50ms"}},
        {"match": {"type": ACK, "probability": 0.2}, "drop": True},
        {"match": {"type": ACK}, "duplicate": {"gap": "1ms..5ms", "probability": 0.2}},
    ]

    def run(seed: int) -> list[tuple]:
        s = sched(spec_latency, perturb, seed=seed)
        out: list[tuple] = []
        for i in range(300):
            t = i * 0.01
            s.push(t, "account-1", ACK, ack(str(i)))
            s.push(t, "account-1", OSU, status(str(i)))
            s.push(t, "account-1", OOU, snapshot(*[str(j) for j in range(max(0, i - 2), i)]))
            out += summary(s.pop_due(t))
            s.engine_delay(t, "PLACE_LIMIT")
        out += summary(drain(s))
        return out + [tuple(a) for a in s.applied]

    assert run(11) == run(11)
    assert run(11) != run(12)


# --- perturbations ---------------------------------------------------------------------------


def test_delay_nth_only_delays_that_occurrence_and_fifo_holds_later_ones():
    s = sched(perturb=[{"match": {"type": OOU, "nth": 2}, "delay": "1s", "name": "slow-second"}])
    for i in range(3):
        s.push(i * 0.1, "account-1", OOU, snapshot(str(i)))
    got = drain(s)
    assert [(round(d.deliver_at, 6), d.message["data"][0]["orderId"]) for d in got] == [
        (0.0, "0"), (1.1, "1"), (1.1, "2")]  # the third waits behind the second: FIFO per type
    assert s.applied == [Applied(0.1, "slow-second", "account-1", OOU)]


def test_delay_range_and_time_window():
    s = sched(perturb=[{"match": {"type": ACK, "from": "1s", "until": "2s"}, "delay": {"by": "100ms..200ms"}}],
              start=10.0)
    for t in (10.5, 11.5, 12.5):
        s.push(t, "account-1", ACK, ack(str(t)))
    got = {d.message["data"]["orderId"]: d.deliver_at for d in drain(s)}
    assert got["10.5"] == 10.5 and got["12.5"] == 12.5
    assert 11.6 <= got["11.5"] <= 11.7


def test_hold_until_releases_right_after_awaited_type_on_same_conn():
    s = sched(perturb=[{"match": {"type": ACK}, "hold_until": {"type": OOU, "max": "2s"}}])
    s.push(0.0, "account-1", ACK, ack("a"))
    s.push(0.0, "account-2", OOU, snapshot())  # another connection: does not release
    assert [d.conn for d in s.pop_due(0.5)] == ["account-2"]
    s.push(0.5, "account-1", OSU, status("a"))
    s.push(0.7, "account-1", OOU, snapshot())
    assert [d.msg_type for d in s.pop_due(0.6)] == [OSU]
    got = s.pop_due(0.7)
    assert [(d.msg_type, d.deliver_at) for d in got] == [(OOU, 0.7), (ACK, 0.7)]
    assert s.next_at() is None


def test_hold_until_gives_up_after_max():
    s = sched({"default": "10ms"}, [{"match": {"type": ACK}, "hold_until": {"type": OOU, "max": "2s"}}])
    s.push(0.0, "account-1", ACK, ack("a"))
    assert s.pop_due(2.0) == []
    got = s.pop_due(2.01)
    assert [(d.msg_type, round(d.deliver_at, 6)) for d in got] == [(ACK, 2.01)]
    # once given up, a later awaited message releases nothing further (and does not fail)
    s.push(3.0, "account-1", OOU, snapshot())
    assert [d.msg_type for d in drain(s)] == [OOU]


def test_reorder_shuffles_within_window_and_delivers_everything():
    orders = set()
    for seed in range(8):
        s = sched(perturb=[{"match": {"type": OSU}, "reorder": {"window": "100ms"}}], seed=seed)
        for i in range(6):
            s.push(i * 0.01, "account-1", OSU, status(str(i)))
        s.push(0.5, "account-1", OSU, status("late"))  # after the window: a new window
        assert s.next_at() == pytest.approx(0.1)
        got = drain(s)
        ids = [d.message["data"]["orderId"] for d in got]
        assert sorted(ids[:6]) == [str(i) for i in range(6)] and ids[6] == "late"
        assert all(d.deliver_at >= 0.1 for d in got[:6])
        orders.add(tuple(ids[:6]))
    assert len(orders) > 1  # different seeds, different shuffles
    assert tuple(str(i) for i in range(6)) not in orders or len(orders) > 2


def test_reorder_window_flushes_when_popped_in_steps():
    s = sched(perturb=[{"match": {"type": OSU}, "reorder": "100ms"}], seed=5)
    s.push(0.0, "account-1", OSU, status("a"))
    s.push(0.05, "account-1", OSU, status("b"))
    assert s.pop_due(0.09) == [] and s.pending() == 2
    assert len(s.pop_due(0.1)) == 2 and s.pending() == 0


def test_drop_nth_and_probability_zero():
    s = sched(perturb=[{"match": {"type": ACK, "nth": [2, 3]}, "drop": True},
                       {"match": {"type": OSU, "probability": 0.0}, "drop": True}])
    for i in range(4):
        s.push(0.0, "account-1", ACK, ack(str(i)))
        s.push(0.0, "account-1", OSU, status(str(i)))
    got = drain(s)
    assert [d.message["data"]["orderId"] for d in got if d.msg_type == ACK] == ["0", "3"]
    assert len([d for d in got if d.msg_type == OSU]) == 4
    assert [a.name for a in s.applied] == ["drop[0]", "drop[0]"]


def test_duplicate_delivers_a_copy_after_gap():
    s = sched(perturb=[{"match": {"type": OSU}, "duplicate": {"gap": "50ms"}}])
    msg = status("a")
    s.push(1.0, "account-1", OSU, msg)
    got = drain(s)
    assert [d.deliver_at for d in got] == [1.0, 1.05]
    assert got[0].message == got[1].message and got[1].message is not msg


def test_resend_stale_redelivers_an_old_snapshot_after_delay():
    s = sched(perturb=[{"match": {"type": OOU, "nth": 3}, "resend_stale": {"age": "1s", "after": "500ms"}}])
    s.push(0.0, "account-1", OOU, snapshot())       # the stale one: before the order
    s.push(0.6, "account-1", OOU, snapshot("a"))    # too young at t=1.2 (age 0.6 < 1s)
    s.push(1.2, "account-1", OOU, snapshot("a"))    # triggers: newest >= 1s old is the first
    s.push(1.3, "account-1", OOU, snapshot("a"))    # not held back by the stale copy
    got = drain(s)
    assert [(d.deliver_at, d.message["data"]) for d in got] == [
        (0.0, []), (0.6, [{"orderId": "a", "status": "Placed"}]), (1.2, [{"orderId": "a", "status": "Placed"}]),
        (1.3, [{"orderId": "a", "status": "Placed"}]), (1.7, [])]
    assert s.applied == [Applied(1.2, "resend_stale[0]", "account-1", OOU)]


def test_resend_stale_defaults_to_open_orders_updates_and_needs_a_candidate():
    s = sched(perturb=[{"resend_stale": True}])
    s.push(0.0, "account-1", ACK, ack("a"))
    s.push(0.1, "account-1", ACK, ack("b"))
    s.push(0.2, "account-1", OOU, snapshot())  # no earlier snapshot: nothing to resend
    s.push(0.3, "account-1", OOU, snapshot("a"))
    got = drain(s)
    assert [d.msg_type for d in got] == [ACK, ACK, OOU, OOU, OOU]
    assert got[-1].message["data"] == []
    assert len(s.applied) == 1


def test_resend_stale_probability_is_seeded():
    def count(seed):
        s = sched(perturb=[{"match": {"type": OOU}, "resend_stale": {"probability": 0.25}}], seed=seed)
        for i in range(400):
            s.push(i * 0.1, "account-1", OOU, snapshot())
        return len(s.applied)

    assert count(1) == count(1)
    assert 60 <= count(1) <= 140


def test_timed_disconnect_relative_to_start_and_after_open():
    s = sched(perturb=[{"match": {"conn": "account"}, "disconnect": {"at": "10s"}},
                       {"match": {"conn": "trade"}, "disconnect": {"after_open": "3s"}}], start=100.0)
    s.connection_opened(100.0, "account-1")
    s.connection_opened(101.0, "trade-1")
    s.connection_opened(100.5, "rest-1")
    got = drain(s)
    assert [(d.deliver_at, d.conn, d.kind) for d in got] == [(104.0, "trade-1", "disconnect"),
                                                            (110.0, "account-1", "disconnect")]
    assert [a.name for a in s.applied] == ["disconnect[1]", "disconnect[0]"]
    s.connection_opened(111.0, "account-2")  # opened after the time has passed: left alone
    assert s.next_at() is None


def test_timed_disconnect_spares_a_reconnect_in_the_same_instant():
    """A client that reconnects at once (no back-off in virtual time: Hummingbot's) is not closed
    again at the same ``at``, which would loop forever."""
    s = sched(perturb=[{"match": {"conn": "account"}, "disconnect": {"at": "10s"}}], start=100.0)
    s.connection_opened(100.0, "account-1")
    s.connection_opened(110.0, "account-2")  # open at the time, before it fires: closed too
    assert [(d.conn, d.kind) for d in s.pop_due(110.0)] == [("account-1", "disconnect"), ("account-2", "disconnect")]
    s.connection_opened(110.0, "account-3")  # the reconnect, still at 110.0
    assert s.next_at() is None


def test_disconnect_after_nth_message_follows_that_message():
    s = sched(perturb=[{"match": {"type": OSU, "nth": 2}, "disconnect": {"gap": "10ms", "code": 1001}}])
    for i in range(3):
        s.push(i * 0.1, "account-1", OSU, status(str(i)))
    got = drain(s)
    assert [(round(d.deliver_at, 6), d.kind) for d in got] == [
        (0.0, "message"), (0.1, "message"), (0.11, "disconnect"), (0.2, "message")]
    assert got[2].message == {"code": 1001} and got[2].msg_type == "DISCONNECT"


def test_connection_closed_forgets_queued_messages_holds_and_windows():
    s = sched(perturb=[{"match": {"type": ACK}, "hold_until": OOU},
                       {"match": {"type": OSU}, "reorder": "1s"},
                       {"match": {"conn": "account"}, "disconnect": {"at": "5s"}}])
    s.connection_opened(0.0, "account-1")
    s.push(0.0, "account-1", ACK, ack("a"))
    s.push(0.0, "account-1", OSU, status("a"))
    s.push(0.0, "account-1", "BALANCE_UPDATE", {"type": "BALANCE_UPDATE", "data": {}})
    s.push(0.0, "account-2", "BALANCE_UPDATE", {"type": "BALANCE_UPDATE", "data": {}})
    s.connection_closed("account-1")
    assert [d.conn for d in drain(s)] == ["account-2"]
    assert s.next_at() is None and s.pending() == 0


def test_http_error_429_route_nth_and_timeout():
    s = sched(perturb=[
        {"match": {"nth": 2}, "http_error": {"status": 429, "route": "POST /v1/orders/limit"}},
        {"match": {"route": "DELETE /v1/orders/order"}, "http_error": 0},
        {"http_error": {"status": 503, "route": "GET /v1/orders/{pair}/orderid/{orderId}"}},
    ])
    assert s.http_fault(0.0, "POST", "/v1/orders/limit") is None
    fault = s.http_fault(0.1, "POST", "/v1/orders/limit")
    assert isinstance(fault, HttpFault) and fault.status == 429
    assert fault.headers["x-valr-ratelimited"] == "true" and "message" in fault.body
    assert s.http_fault(0.2, "POST", "/v1/orders/limit") is None
    assert s.http_fault(0.3, "DELETE", "/v1/orders/order").status == 0
    assert s.http_fault(0.4, "GET", "/v1/orders/{pair}/orderid/{orderId}").status == 503
    assert s.http_fault(0.5, "GET", "/v1/account/balances") is None
    assert [(a.name, a.msg_type) for a in s.applied] == [
        ("http_error[0]", "POST /v1/orders/limit"), ("http_error[1]", "DELETE /v1/orders/order"),
        ("http_error[2]", "GET /v1/orders/{pair}/orderid/{orderId}")]


# --- ws_error: account-WebSocket commands answered with a fault --------------------------------


def test_ws_error_spellings_and_defaults():
    s = sched(perturb=[{"ws_error": True}, {"ws_error": 0}, {"match": {"type": "CANCEL_LIMIT_ORDER"},
                                                         "ws_error": {"status": 429, "nth": 2}}])
    a, b, c = s.perturbations
    assert isinstance(a, WsError) and a.status == 429 and a.name == "ws_error[0]"
    assert a.match.types == () and a.default_types == WS_COMMAND_TYPES
    assert isinstance(b, WsError) and b.status == 0
    assert isinstance(c, WsError) and c.match.types == ("CANCEL_LIMIT_ORDER",) and c.match.nth == (2,)


def test_ws_command_fault_honours_type_nth_conn_and_window():
    s = sched(perturb=[
        {"match": {"type": "PLACE_LIMIT_ORDER", "nth": [2, 3]}, "ws_error": 429},
        {"match": {"type": "CANCEL_LIMIT_ORDER", "conn": "account-2"}, "ws_error": 0},
        {"match": {"type": "MODIFY_ORDER", "from": "10s", "until": "20s"}, "ws_error": True},
    ])
    got = [s.ws_command_fault(0.1 * i, "account-1", "PLACE_LIMIT_ORDER") for i in range(4)]
    assert got == [None, WsCommandFault(429), WsCommandFault(429), None]
    assert s.ws_command_fault(1.0, "account-1", "CANCEL_LIMIT_ORDER") is None  # another connection only
    assert s.ws_command_fault(1.0, "account-2", "CANCEL_LIMIT_ORDER") == WsCommandFault(0)
    assert s.ws_command_fault(5.0, "account-1", "MODIFY_ORDER") is None  # before the window
    assert s.ws_command_fault(15.0, "account-1", "MODIFY_ORDER") == WsCommandFault(429)
    assert s.ws_command_fault(25.0, "account-1", "MODIFY_ORDER") is None  # after it
    assert s.ws_command_fault(1.0, "account-1", "BATCH_ORDERS") is None  # no entry names it
    assert s.applied == [
        Applied(0.1, "ws_error[0]", "account-1", "PLACE_LIMIT_ORDER"),
        Applied(pytest.approx(0.2), "ws_error[0]", "account-1", "PLACE_LIMIT_ORDER"),
        Applied(1.0, "ws_error[1]", "account-2", "CANCEL_LIMIT_ORDER"),
        Applied(15.0, "ws_error[2]", "account-1", "MODIFY_ORDER"),
    ]


def test_ws_command_fault_probability_is_seeded_and_push_ignores_it():
    def pattern(seed):
        s = sched(perturb=[{"match": {"type": "PLACE_LIMIT_ORDER"}, "ws_error": {"probability": 0.3}}], seed=seed)
        return [s.ws_command_fault(i * 0.01, "account-1", "PLACE_LIMIT_ORDER") is not None for i in range(300)]

    a = pattern(1)
    assert a == pattern(1) and a != pattern(2)
    assert 50 < sum(a) < 130
    # An entry without match.type covers every write command, and never touches outbound messages.
    s = sched(perturb=[{"ws_error": 429}])
    assert all(s.ws_command_fault(0.0, "account-1", t) == WsCommandFault(429) for t in WS_COMMAND_TYPES)
    s.push(0.0, "account-1", ACK, ack("a"))
    assert [d.msg_type for d in drain(s)] == [ACK] and len(s.applied) == len(WS_COMMAND_TYPES)


# --- pct: PCT-style stream priorities -------------------------------------------------------------

A_TYPE, B_TYPE = OSU, OOU


def pct_run(seed: int, depth: int = 2, horizon: int = 10, n: int = 20, window: str = "1s"):
    """Alternate two account streams (ORDER_STATUS_UPDATE, OPEN_ORDERS_UPDATE) every 10 ms, no latency."""
    s = sched(perturb=[{"match": {"conn": "account"}, "pct": {"depth": depth, "window": window,
                                                              "horizon": horizon}}], seed=seed)
    for k in range(1, n + 1):
        t = A_TYPE if k % 2 else B_TYPE
        s.push(k * 0.01, "account-1", t, {"type": t, "k": k})
    return s, drain(s)


def test_pct_spellings_and_defaults():
    s = sched(perturb=[{"pct": True}, {"pct": 5}, {"match": {"conn": "trade"},
                                                  "pct": {"depth": 2, "window": "20ms", "horizon": 50}}])
    a, b, c = s.perturbations
    assert isinstance(a, Pct) and (a.depth, a.window_s, a.horizon, a.name) == (3, 0.05, 200, "pct[0]")
    assert isinstance(b, Pct) and b.depth == 5
    assert isinstance(c, Pct) and (c.depth, c.window_s, c.horizon) == (2, 0.02, 50)


def test_pct_is_deterministic_for_a_seed():
    def result(seed):
        s, got = pct_run(seed, depth=3, horizon=15)
        return summary(got), list(s.applied)

    assert result(4) == result(4)
    assert any(result(4) != result(seed) for seed in range(5, 10))


def test_pct_low_priority_stream_is_overtaken_without_change_points():
    # depth 1: no change point; of two streams one is top (no extra delay), the other gets window / 2
    lows = set()
    for seed in range(12):
        s, got = pct_run(seed, depth=1, window="1s")
        assert not [a for a in s.applied if a.msg_type.startswith("PCT_CHANGE_POINT")]
        delayed = {a.msg_type for a in s.applied}
        assert len(delayed) == 1
        low = delayed.pop()
        lows.add(low)
        # every top-priority message overtakes every low-priority one produced before it (the
        # very first message, k = 1, was alone: rank 0 of 1, no extra delay)
        order = [d.msg_type for d in got if d.message["k"] > 1]
        assert order == [t for t in order if t != low] + [low] * order.count(low)
        extra = {d.message["k"]: round(d.deliver_at - d.message["k"] * 0.01, 9) for d in got}
        assert {extra[k] for k in extra if k > 1} == {0.0, 0.5} and extra[1] == 0.0
        assert all(extra[d.message["k"]] == 0.5 for d in got if d.msg_type == low and d.message["k"] > 1)
        # same-type FIFO holds within each stream
        for t in (A_TYPE, B_TYPE):
            ks = [d.message["k"] for d in got if d.msg_type == t]
            assert ks == sorted(ks)
    assert lows == {A_TYPE, B_TYPE}  # either stream may be the low one, by seed


def test_pct_change_point_demotes_the_top_stream():
    checked = overtaken = 0
    for seed in range(30):
        s, got = pct_run(seed, depth=2, horizon=10)
        changes = [a for a in s.applied if a.msg_type.startswith("PCT_CHANGE_POINT")]
        assert len(changes) == 1  # depth - 1
        change = changes[0]
        assert change.name == "pct[0]" and change.conn == "account"
        at = round(change.now / 0.01)  # the matching message it fired on (1-based)
        assert 1 <= at <= 10
        if at < 4:
            continue  # no low-priority message (other than the lone first one) before the change point
        checked += 1
        demoted = change.msg_type.split(" ", 1)[1]
        delays = [a for a in s.applied if not a.msg_type.startswith("PCT_CHANGE_POINT")]
        before = {a.msg_type for a in delays if a.now < change.now - 1e-9}
        after = {a.msg_type for a in delays if a.now > change.now - 1e-9}
        assert demoted not in before and before == {A_TYPE, B_TYPE} - {demoted}
        assert after == {demoted}
        # before the change point the demoted (then top) stream overtook the other one
        low = next(d for d in got if d.msg_type != demoted and d.message["k"] > 1)
        tops = [d for d in got if d.msg_type == demoted and low.message["k"] < d.message["k"] < at]
        assert all(got.index(d) < got.index(low) for d in tops)
        overtaken += bool(tops)
    assert checked >= 10 and overtaken >= 5


def test_pct_without_pct_draws_nothing_extra():
    plain = sched({"default": "1ms..5ms"}, [], seed=3)
    other = sched({"default": "1ms..5ms"}, [{"match": {"conn": "trade"}, "drop": True}], seed=3)
    for s in (plain, other):
        for k in range(10):
            s.push(k * 0.01, "account-1", OSU, status(str(k)))
    assert summary(drain(plain)) == summary(drain(other))


def test_http_and_engine_delays_with_delay_perturbations():
    s = sched({"rest": "20ms", "engine": "2ms"},
              [{"match": {"route": "POST /v1/orders/limit"}, "delay": "1s"},
               {"match": {"conn": "engine", "type": "CANCEL_ORDER", "nth": 1}, "delay": "300ms"}])
    assert s.http_delay(0.0, "POST", "/v1/orders/limit") == pytest.approx(1.02)
    assert s.http_delay(0.0, "GET", "/v1/orders/open") == pytest.approx(0.02)
    assert s.engine_delay(0.0, "PLACE_LIMIT") == pytest.approx(0.002)
    assert s.engine_delay(0.0, "CANCEL_ORDER") == pytest.approx(0.302)
    assert s.engine_delay(0.0, "CANCEL_ORDER") == pytest.approx(0.002)
    # An engine delay never touches pushed messages.
    s.push(1.0, "account-1", "CANCEL_ORDER", {"type": "CANCEL_ORDER"})
    assert drain(s)[0].deliver_at == 1.0


def test_predicate_omits_pending_order_targets_the_stale_snapshot():
    s = sched(perturb=[{"match": {"type": OOU, "predicate": "omits-pending-order"}, "delay": "1s"}])
    s.push(0.0, "account-1", OOU, snapshot("x"))        # nothing pending
    s.push(0.1, "account-1", ACK, ack("a"))             # a is acked, not yet on the book
    s.push(0.2, "account-1", OOU, snapshot("x"))        # built before a reached the book: stale
    s.push(1.5, "account-1", OOU, snapshot("x", "a"))   # a is there now
    s.push(1.6, "account-1", OOU, snapshot("x"))        # a gone (cancelled/filled): not pending any more
    got = drain(s)
    assert [round(d.deliver_at, 6) for d in got] == [0.0, 0.1, 1.2, 1.5, 1.6]
    assert [a.now for a in s.applied] == [0.2]


def test_predicate_mentions_bot_order_and_note_order():
    s = sched(perturb=[{"match": {"type": OSU, "predicate": "mentions-bot-order"}, "drop": True}])
    s.push(0.0, "account-1", ACK, ack("mine"))
    s.note_order(0.0, "rest-placed")
    for oid in ("mine", "other", "rest-placed"):
        s.push(0.1, "account-1", OSU, status(oid))
    got = [d.message["data"]["orderId"] for d in drain(s) if d.msg_type == OSU]
    assert got == ["other"]


def test_the_bot_orders_known_are_the_latest_ones_so_a_soak_stays_flat(monkeypatch):
    monkeypatch.setattr(schedule_module, "_BOT_ORDERS_KEPT", 3)
    s = sched(perturb=[{"match": {"type": OSU, "predicate": "mentions-bot-order"}, "drop": True}])
    for oid in ("o1", "o2", "o3", "o2", "o4"):  # o2 noted twice counts once
        s.note_order(0.0, oid)
    for oid in ("o1", "o2", "o3", "o4"):
        s.push(0.1, "account-1", OSU, status(oid))
    got = [d.message["data"]["orderId"] for d in drain(s) if d.msg_type == OSU]
    assert got == ["o1"]  # forgotten: no longer the bot's, so not dropped


# --- building from a spec ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "latency,perturb,key",
    [
        ({"OPEN_ORDERS": "fast"}, [], "latency.OPEN_ORDERS"),
        ({"open_orders_update": "5ms"}, [], "latency.open_orders_update"),
        ({"engine": {"place": "1ms"}}, [], "latency.engine.place"),
        ({}, [{"match": {"type": "open_orders_update"}, "drop": True}], "perturb[0].match.type"),
        ({}, [{"drop": True}, {"match": {"type": [OOU, 3]}, "drop": True}], "perturb[1].match.type[1]"),
        ({}, [{"match": {"typo": OOU}, "drop": True}], "perturb[0].match.typo"),
        ({}, [{"match": {"conn": "acct"}, "drop": True}], "perturb[0].match.conn"),
        ({}, [{"match": {"nth": 0}, "drop": True}], "perturb[0].match.nth"),
        ({}, [{"match": {"probability": 1.5}, "drop": True}], "perturb[0].match.probability"),
        ({}, [{"match": {"from": "2s", "until": "1s"}, "drop": True}], "perturb[0].match.until"),
        ({}, [{"match": {"predicate": "is-bad"}, "drop": True}], "perturb[0].match.predicate"),
        ({}, [{"drop": True, "delay": "1s"}], "perturb[0]"),
        ({}, [{"match": {}}], "perturb[0]"),
        ({}, [{"explode": True}], "perturb[0].explode"),
        ({}, [{"delay": {"by": "soon"}}], "perturb[0].delay.by"),
        ({}, [{"delay": {}}], "perturb[0].delay.by"),
        ({}, [{"hold_until": {"max": "1s"}}], "perturb[0].hold_until.type"),
        ({}, [{"match": {"type": ACK}, "hold_until": ACK}], "perturb[0].hold_until.type"),
        ({}, [{"reorder": {"window": "0ms"}}], "perturb[0].reorder.window"),
        ({}, [{"resend_stale": {"after": "6s", "probability": 2}}], "perturb[0].resend_stale.probability"),
        ({}, [{"match": {"probability": 0.5}, "resend_stale": {"probability": 0.1}}],
         "perturb[0].resend_stale.probability"),
        ({}, [{"resend_stale": {"age": "old"}}], "perturb[0].resend_stale.age"),
        ({}, [{"duplicate": {"gaps": "1ms"}}], "perturb[0].duplicate.gaps"),
        ({}, [{"disconnect": {"at": "1s", "after_open": "1s"}}], "perturb[0].disconnect.after_open"),
        ({}, [{"http_error": {"status": 200}}], "perturb[0].http_error.status"),
        ({}, [{"disconnect": {"at": "1s", "code": 42}}], "perturb[0].disconnect.code"),
        ({}, [{"match": {"type": OOU}, "disconnect": {"at": "1s"}}], "perturb[0].match.type"),
        ({}, [{"http_error": {"route": "orders"}}], "perturb[0].http_error.route"),
        ({}, [{"match": {"type": OOU}, "http_error": 429}], "perturb[0].match.type"),
        ({}, [{"drop": True, "name": ""}], "perturb[0].name"),
        ({}, ["drop"], "perturb[0]"),
        ({}, [{"ws_error": 503}], "perturb[0].ws_error.status"),
        ({}, [{"ws_error": {"status": 429, "route": "x"}}], "perturb[0].ws_error.route"),
        ({}, [{"match": {"type": OSU}, "ws_error": 429}], "perturb[0].match.type"),
        ({}, [{"match": {"type": ["PLACE_LIMIT_ORDER", ACK]}, "ws_error": 429}], "perturb[0].match.type[1]"),
        ({}, [{"match": {"conn": "trade"}, "ws_error": 429}], "perturb[0].match.conn"),
        ({}, [{"match": {"route": "POST /v1/orders/limit"}, "ws_error": 429}], "perturb[0].match.route"),
        ({}, [{"match": {"predicate": "mentions-order"}, "ws_error": 429}], "perturb[0].match.predicate"),
        ({}, [{"pct": 0}], "perturb[0].pct.depth"),
        ({}, [{"pct": {"depth": 2, "window": "0ms"}}], "perturb[0].pct.window"),
        ({}, [{"pct": {"horizon": 0}}], "perturb[0].pct.horizon"),
        ({}, [{"pct": {"depth": 2, "windows": "1s"}}], "perturb[0].pct.windows"),
        ({}, [{"match": {"conn": "rest"}, "pct": 3}], "perturb[0].match.conn"),
        ({}, [{"match": {"route": "GET /v1/orders/open"}, "pct": 3}], "perturb[0].match.route"),
    ],
)
def test_from_spec_errors_name_the_key(latency, perturb, key):
    with pytest.raises(SpecError) as err:
        DeliverySchedule.from_spec(latency, perturb, 0)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: ")


def test_from_spec_defaults_and_names():
    s = DeliverySchedule.from_spec(None, None, 4)
    assert s.seed == 4 and s.perturbations == ()
    s = DeliverySchedule.from_spec({}, [{"name": "lose-acks", "match": {"type": ACK}, "drop": True}], 0)
    assert s.perturbations[0].name == "lose-acks"
