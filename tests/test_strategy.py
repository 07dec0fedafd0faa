"""The quoting loop against a small fake connector (the connector is the edge here)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal

import pytest

from replay.strategy import PureMarketMaking


@dataclass
class Ev:
    kind: str
    client_order_id: str


class FakeConnector:
    """Places and cancels nothing for real: records calls, and lets the test emit events."""

    def __init__(self, mid: Decimal | None = Decimal("1000000"), ready: bool = True):
        self.ready = ready
        self.mid = mid
        self.placed: list[tuple[str, str, Decimal, Decimal]] = []
        self.cancels: list[str] = []
        self.listeners = []
        self._n = 0

    def mid_price(self, pair):
        return self.mid

    def place(self, pair, side, price, amount):
        self._n += 1
        cid = f"c{self._n}"
        self.placed.append((cid, side, price, amount))
        return cid

    def cancel(self, pair, cid):
        self.cancels.append(cid)

    def add_listener(self, cb):
        self.listeners.append(cb)

    def emit(self, kind, cid):
        for cb in self.listeners:
            cb(Ev(kind, cid))


class FakeTrace:
    def __init__(self):
        self.records = []

    def record(self, conn, dir, kind, type, data):
        self.records.append({"conn": conn, "dir": dir, "kind": kind, "type": type, "data": data})

    def types(self):
        return [r["type"] for r in self.records]


def make(conn=None, **kw):
    conn = conn or FakeConnector()
    trace = FakeTrace()
    params = dict(bid_spread=0.001, ask_spread=0.001, order_amount=Decimal("0.001"), trace=trace)
    params.update(kw)
    return conn, PureMarketMaking(conn, "BTCZAR", **params), trace


def test_not_ready_does_nothing_and_records_skip_once():
    conn, s, trace = make(FakeConnector(ready=False))
    for t in (1, 2, 3):
        s.tick(t)
    assert conn.placed == [] and conn.cancels == []
    assert trace.types() == ["TICK_SKIPPED"]
    assert trace.records[0]["data"] == {"reason": "connector not ready"}
    conn.ready = True
    s.tick(4)
    assert len(conn.placed) == 2


def test_first_tick_quotes_bid_and_ask_quantised_for_zar():
    conn, s, trace = make(FakeConnector(mid=Decimal("1000000.5")))
    s.tick(1.0)
    assert [(side, price, amount) for _, side, price, amount in conn.placed] == [
        ("buy", Decimal("999000"), Decimal("0.001")),  # 999000.4995 floored
        ("sell", Decimal("1001001"), Decimal("0.001")),  # 1001000.5005 ceiled
    ]
    assert trace.types() == ["CREATE", "CREATE"]
    rec = trace.records[0]
    assert (rec["conn"], rec["dir"], rec["kind"]) == ("strategy", "local", "strategy")
    assert rec["data"] == {"client_order_id": "c1", "side": "buy", "price": "999000", "amount": "0.001",
                           "cycle": 1, "level": 0, "intent": "c1/buy/0"}
    assert s.create_timestamp == 2.0 and s.cancel_timestamp == 2.0


def test_connector_quantize_price_and_levels():
    class Q(FakeConnector):
        def quantize_price(self, pair, price):
            return (price / 10).to_integral_value() * 10

    conn, s, _ = make(Q(mid=Decimal("100000")), order_levels=2, order_level_spread=0.01)
    s.tick(1.0)
    assert [(side, price) for _, side, price, _ in conn.placed] == [
        ("buy", Decimal("99900")),
        ("buy", Decimal("98900")),
        ("sell", Decimal("100100")),
        ("sell", Decimal("101100")),
    ]


def test_refresh_cycle_waits_for_cancel_confirmation():
    conn, s, trace = make()
    s.tick(1.0)  # create c1, c2; create_ts = cancel_ts = 2
    s.tick(1.5)  # nothing due
    assert conn.cancels == []
    s.tick(2.0)  # cancel both
    assert conn.cancels == ["c1", "c2"]
    assert s.in_flight_cancels == {"c1": 2.0, "c2": 2.0}
    s.tick(3.0)  # cancels in flight: no create, no duplicate cancel
    assert len(conn.placed) == 2 and conn.cancels == ["c1", "c2"]
    conn.emit("cancelled", "c1")
    s.tick(4.0)  # c2 still in flight
    assert len(conn.placed) == 2
    conn.emit("cancelled", "c2")
    assert s.tracked == {} and s.in_flight_cancels == {}
    s.tick(5.0)
    assert [p[0] for p in conn.placed] == ["c1", "c2", "c3", "c4"]
    assert s.create_timestamp == 6.0
    assert trace.types() == ["CREATE", "CREATE", "CANCEL", "CANCEL", "CREATE", "CREATE"]


def test_without_waiting_creates_while_cancels_in_flight():
    conn, s, _ = make(should_wait_order_cancel_confirmation=False)
    s.tick(1.0)
    s.tick(2.0)  # cancel both; they are no longer "active"
    s.tick(3.0)
    assert len(conn.placed) == 4


def test_false_cancel_event_makes_the_strategy_forget_a_live_order():
    conn, s, _ = make()
    s.tick(1.0)
    conn.emit("cancelled", "c1")  # the connector's false cancel: c1 is still live on the exchange
    s.tick(2.0)
    assert conn.cancels == ["c2"]  # c1 is never cancelled again
    conn.emit("cancelled", "c2")
    s.tick(3.0)
    assert len(conn.placed) == 4 and "c1" not in s.tracked


def test_unconfirmed_cancel_stalls_then_is_retried_after_expiry():
    conn, s, _ = make(cancel_expiry=10.0)
    s.tick(1.0)
    s.tick(2.0)
    for t in range(3, 12):
        s.tick(float(t))
    assert conn.cancels == ["c1", "c2"] and len(conn.placed) == 2  # stalled, not accumulating
    s.tick(12.0)  # 10 s after the cancel: active again, cancelled again
    assert conn.cancels == ["c1", "c2", "c1", "c2"]
    assert len(conn.placed) == 2


def test_completed_delays_next_create_and_failed_stops_tracking():
    conn, s, _ = make(filled_order_delay=5.0)
    s.tick(1.0)
    conn.emit("filled", "c1")
    assert "c1" in s.tracked and s.counts["filled"] == 1
    conn.emit("completed", "c1")  # outside a loop: stamped with the last tick time
    conn.emit("failed", "c2")
    assert s.tracked == {}
    assert s.create_timestamp == 6.0
    for t in (2.0, 3.0, 6.0):
        s.tick(t)
    assert len(conn.placed) == 2
    s.tick(7.0)
    assert len(conn.placed) == 4


def test_events_without_kind_are_mapped_by_class_name():
    @dataclass
    class OrderCancelled:
        timestamp: float  # epoch seconds in the reference connector: not the tick clock
        client_order_id: str

    @dataclass
    class OrderCompleted:
        timestamp: float
        client_order_id: str

    @dataclass
    class OrderFailure:
        timestamp: float
        client_order_id: str

    conn, s, _ = make(filled_order_delay=10.0)
    s.tick(1.0)
    conn.listeners[0](OrderCancelled(1.7e9, "c1"))
    conn.listeners[0](OrderFailure(1.7e9, "nope"))
    assert set(s.tracked) == {"c2"}
    conn.listeners[0](OrderCompleted(1.7e9, "c2"))
    assert s.tracked == {} and s.create_timestamp == 11.0


def test_reference_connector_quantize_is_used():
    class Q(FakeConnector):
        def quantize(self, pair, amount, price):
            return amount, (price / 100).to_integral_value() * 100

    conn, s, _ = make(Q(mid=Decimal("123456")))
    s.tick(1.0)
    assert [p[2] for p in conn.placed] == [Decimal("123300"), Decimal("123600")]


def test_events_for_unknown_orders_are_ignored():
    conn, s, _ = make()
    s.tick(1.0)
    conn.emit("cancelled", "someone-else")
    conn.emit("bogus", "c1")
    assert set(s.tracked) == {"c1", "c2"}


def test_no_mid_price_skips():
    conn, s, trace = make(FakeConnector(mid=None))
    s.tick(1.0)
    s.tick(2.0)
    assert conn.placed == [] and trace.types() == ["TICK_SKIPPED"]
    assert trace.records[0]["data"]["reason"] == "no mid price"


@pytest.mark.parametrize(
    "kw, field",
    [
        ({"order_amount": Decimal("0")}, "order_amount"),
        ({"order_levels": 0}, "order_levels"),
        ({"order_refresh_time": 0}, "order_refresh_time"),
        ({"bid_spread": -0.1}, "bid_spread"),
        ({"order_amount": "abc"}, "order_amount"),
    ],
)
def test_bad_parameters_name_the_field(kw, field):
    with pytest.raises((ValueError, TypeError), match=field):
        make(**kw)


@pytest.mark.looptime
async def test_run_ticks_on_aligned_loop_times():
    conn, s, _ = make(tick_interval=0.5, order_refresh_time=1.0)
    ticks = []
    orig = s.tick

    def spy(now):
        ticks.append((now, asyncio.get_running_loop().time()))
        orig(now)

    s.tick = spy
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.3)
    start = loop.time()
    await asyncio.wait_for(s.run(until=start + 2.6), timeout=10)
    assert loop.time() == pytest.approx(start + 2.6)
    assert [t for t, _ in ticks] == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.5])
    assert all(lt == pytest.approx(t) for t, lt in ticks)
    assert len(conn.placed) == 2  # created at 0.5; cancelled at 1.5, never confirmed


@pytest.mark.looptime
async def test_run_survives_a_failing_tick():
    class Boom(FakeConnector):
        def place(self, *a):
            raise RuntimeError("socket closed")

    conn, s, trace = make(Boom(), tick_interval=1.0)
    await asyncio.wait_for(s.run(until=3.5), timeout=10)
    skips = [r for r in trace.records if r["type"] == "TICK_SKIPPED"]
    assert len(skips) == 1 and "socket closed" in skips[0]["data"]["reason"]


async def test_run_on_the_real_loop_ticks_each_multiple_once():
    conn, s, _ = make(tick_interval=0.02)
    ticks = []
    orig = s.tick

    def spy(now):
        ticks.append(now)
        orig(now)

    s.tick = spy
    loop = asyncio.get_running_loop()
    until = loop.time() + 0.15
    await asyncio.wait_for(s.run(until), timeout=5)
    assert loop.time() >= until
    steps = [round(t / 0.02) for t in ticks]
    assert steps == list(range(steps[0], steps[0] + len(steps))) and 5 <= len(steps) <= 8
    assert all(t < until for t in ticks)
