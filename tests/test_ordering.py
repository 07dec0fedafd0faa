"""``[[ordering]]`` constraints: message A about an order delivered before message B about it, by a gap.

Pure schedule tests (no sockets), the loader's refusals, and one run that forces the open-orders race."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from replay.latency import LatencyModel, SpecError
from replay.runner import run_scenario
from replay.scenario import ScenarioError, load_scenario, loads_scenario
from replay.schedule import ORDERING_UNMET, Applied, DeliverySchedule, Ordering, orderings_from_spec

OOU = "OPEN_ORDERS_UPDATE"
ACK = "PLACE_LIMIT_WS_RESPONSE"
OSU = "ORDER_STATUS_UPDATE"
ACC = "account-1"


def snapshot(*ids: str) -> dict:
    return {"type": OOU, "data": [{"orderId": i, "status": "Placed"} for i in ids]}


def ack(oid: str) -> dict:
    return {"type": ACK, "data": {"orderId": oid, "customerOrderId": f"c-{oid}"}}


def status(oid: str) -> dict:
    return {"type": OSU, "data": {"orderId": oid, "orderStatusType": "Placed"}}


RACE = Ordering(first=OOU, first_when="omits-order", then=ACK, gap_s=0.005, name="snapshot-before-ack")


def fixed(orderings, latency: dict | None = None, seed: int = 0) -> DeliverySchedule:
    """Constant latencies (10 ms unless ``latency`` says otherwise), so delivery times are exact."""
    spec = {"default": "10ms", **(latency or {})}
    return DeliverySchedule(seed, LatencyModel.from_spec(spec), orderings=orderings, start=0.0)


def drain(s: DeliverySchedule, until: float = 100.0) -> list[tuple[float, str, list[str]]]:
    return [(round(d.deliver_at, 6), d.msg_type, ids(d.message)) for d in s.pop_due(until)]


def ids(message: dict) -> list[str]:
    data = message["data"]
    return [o["orderId"] for o in (data if isinstance(data, list) else [data])]


def place_two(s: DeliverySchedule, t: float = 1.0) -> None:
    """The race: bid b and ask a acknowledged at t (their replies pushed at once); the engine processes b
    at t + 1 ms and publishes a snapshot without a (pending), then a at t + 2 ms."""
    s.note_order(t, "b")
    s.push(t, ACC, ACK, ack("b"))
    s.note_order(t, "a")
    s.push(t, ACC, ACK, ack("a"))
    s.push(t + 0.001, ACC, OSU, status("b"))
    s.push(t + 0.001, ACC, OOU, snapshot("b"))
    s.push(t + 0.002, ACC, OSU, status("a"))
    s.push(t + 0.002, ACC, OOU, snapshot("b", "a"))


# --- the schedule --------------------------------------------------------------------------------------------


def test_reply_pushed_first_is_held_then_placed_gap_after_the_omitting_snapshot():
    s = fixed([RACE])
    place_two(s)
    out = drain(s)
    # the snapshot without a is delivered at 1.011; a's reply exactly 5 ms later, although it was due at 1.010
    assert (1.011, OOU, ["b"]) in out
    assert (1.016, ACK, ["a"]) in out
    assert out.index((1.011, OOU, ["b"])) < out.index((1.016, ACK, ["a"]))
    # b was never omitted by a snapshot: once seen (its status at 1.001) its reply goes at its normal time
    assert (1.010, ACK, ["b"]) in out
    assert s.applied == [
        Applied(1.001, "snapshot-before-ack", ACC, f"{ORDERING_UNMET} {ACK}"),
        Applied(1.001, "snapshot-before-ack", ACC, ACK),
    ]


def test_without_the_constraint_the_reply_goes_first():
    s = fixed([])
    place_two(s)
    out = drain(s)
    assert out.index((1.010, ACK, ["a"])) < out.index((1.011, OOU, ["b"]))
    assert s.applied == []


def test_a_held_reply_does_not_hold_back_later_messages_of_its_type():
    c = Ordering(first=OSU, then=ACK, gap_s=0.005, orders=(1,), name="first-only")
    s = fixed([c], {ACK: "1ms"})
    assert s.push(1.0, ACC, ACK, ack("a")) == pytest.approx(1.001)  # order 1: held for its status
    assert s.push(1.0005, ACC, ACK, ack("c")) == pytest.approx(1.0015)  # order 2: not behind a
    s.push(1.05, ACC, OSU, status("a"))
    assert drain(s) == [(1.0015, ACK, ["c"]), (1.06, OSU, ["a"]), (1.065, ACK, ["a"])]


def test_first_pushed_before_then_places_then_at_first_plus_gap():
    # OOU-listing-X then ORDER_STATUS_UPDATE-about-X, 3 ms apart; the snapshot comes first
    c = Ordering(first=OOU, then=OSU, gap_s=0.003, name="listed-then-status")
    s = fixed([c], {OSU: "50ms"})
    s.push(1.0, ACC, ACK, ack("x"))
    assert s.push(1.002, ACC, OOU, snapshot("x")) == pytest.approx(1.012)
    at = s.push(1.004, ACC, OSU, status("x"))
    assert at == pytest.approx(1.015)  # not its normal 1.054
    assert drain(s)[-1] == (1.015, OSU, ["x"])
    assert s.applied == [Applied(1.004, "listed-then-status", ACC, OSU)]


def test_first_already_delivered_long_ago_then_goes_at_once():
    c = Ordering(first=OOU, then=OSU, gap_s=0.001, name="c")
    s = fixed([c])
    s.push(1.0, ACC, ACK, ack("x"))
    s.push(1.0, ACC, OOU, snapshot("x"))  # delivered at 1.010
    assert s.push(2.0, ACC, OSU, status("x")) == pytest.approx(2.0)  # 1.011 has passed: now, not in the past


def test_nth_order_only():
    s = fixed([Ordering(first=OOU, first_when="omits-order", then=ACK, gap_s=0.005, orders=(2,), name="second")])
    place_two(s, 1.0)  # orders 1 (b) and 2 (a)
    place_two(s, 3.0)  # orders 3 and 4: untouched
    out = drain(s)
    assert (1.016, ACK, ["a"]) in out
    assert (3.010, ACK, ["a"]) in out and (3.010, ACK, ["b"]) in out
    assert [a.now for a in s.applied] == [1.001]


def test_max_wait_runs_out_and_is_recorded():
    c = Ordering(first=OSU, then=ACK, gap_s=0.001, max_wait_s=0.5, name="status-first")
    s = fixed([c])
    s.push(1.0, ACC, ACK, ack("x"))  # waits for a status about x that never comes
    assert drain(s, 1.4) == []
    assert drain(s, 2.0) == [(1.51, ACK, ["x"])]
    assert s.applied == [Applied(1.51, "status-first", ACC, f"{ORDERING_UNMET} {ACK}")]


def test_after_then_was_delivered_nothing_changes():
    c = Ordering(first=OSU, then=ACK, gap_s=0.001, max_wait_s=0.05, name="c")
    s = fixed([c])
    s.push(1.0, ACC, ACK, ack("x"))
    assert drain(s) == [(1.06, ACK, ["x"])]
    s.push(2.0, ACC, OSU, status("x"))
    s.push(2.0, ACC, ACK, ack("x"))  # a second reply about x: the constraint is spent
    assert drain(s) == [(2.01, OSU, ["x"]), (2.01, ACK, ["x"])]
    assert len(s.applied) == 1


def test_an_entry_given_twice_acts_once():
    s = fixed([RACE, Ordering(first=OOU, first_when="omits-order", then=ACK, gap_s=0.005, orders=(2,), name="dup")])
    place_two(s)
    s.push(1.1, ACC, ACK, ack("a"))  # a second reply about order 2: neither entry moves it
    out = drain(s)
    assert (1.016, ACK, ["a"]) in out and (1.11, ACK, ["a"]) in out
    assert [a.name for a in s.applied if a.msg_type == ACK] == ["snapshot-before-ack"]


def test_orders_the_schedule_does_not_know_are_left_alone():
    s = fixed([Ordering(first=OSU, then=OOU, gap_s=0.001, name="c")])
    s.push(1.0, ACC, OOU, snapshot("market-order"))  # never placed by the bot
    s.push(1.0, "trade-1", OOU, snapshot("x"))  # not an account connection
    assert drain(s) == [(1.01, OOU, ["market-order"]), (1.01, OOU, ["x"])]
    assert s.applied == []


def test_a_chain_of_constraints_cascades():
    # snapshot omits x -> reply about x (+5 ms) -> status about x (+2 ms)
    chain = [RACE, Ordering(first=ACK, then=OSU, gap_s=0.002, name="ack-then-status")]
    s = fixed(chain, {OSU: "0ms"})
    s.note_order(1.0, "y")
    s.push(1.0, ACC, ACK, ack("y"))
    s.note_order(1.0, "x")
    s.push(1.0, ACC, ACK, ack("x"))  # held for the snapshot
    s.push(1.001, ACC, OOU, snapshot("y"))  # omits x: delivered 1.011, x's reply at 1.016
    s.push(1.002, ACC, OSU, status("x"))  # held for x's reply: 1.018
    out = drain(s)
    assert (1.016, ACK, ["x"]) in out and (1.018, OSU, ["x"]) in out


def test_a_closed_connection_forgets_its_held_messages():
    s = fixed([RACE])
    s.note_order(1.0, "x")
    s.push(1.0, ACC, ACK, ack("x"))
    assert s.pending() == 1
    s.connection_closed(ACC)
    assert s.pending() == 0
    s.push(1.1, ACC, OOU, snapshot())
    assert drain(s) == [(1.11, OOU, [])]


def test_same_seed_same_schedule_and_no_extra_draws():
    def run(seed: int, orderings) -> tuple[list, list]:
        s = DeliverySchedule(seed, LatencyModel.from_spec({"default": "1ms..20ms"}), orderings=orderings, start=0.0)
        for k in range(20):
            place_two(s, 1.0 + k)
            s.note_order(1.0 + k, f"r{k}")
        return drain(s, 1000.0), list(s.applied)

    assert run(3, [RACE]) == run(3, [RACE])
    assert run(3, [RACE]) != run(4, [RACE])
    # the constraint draws nothing: the messages it does not move go exactly as without it
    with_c, without = run(5, [RACE])[0], run(5, [])[0]
    assert [d for d in with_c if d[1] != ACK] == [d for d in without if d[1] != ACK]


def test_from_spec_reads_ordering():
    s = DeliverySchedule.from_spec({"default": "10ms"}, [], 0, start=0.0, ordering=[
        {"name": "snapshot-before-ack", "first": OOU, "first_when": "omits-order", "then": ACK, "gap": "5ms"}])
    assert s.orderings == (RACE,)
    place_two(s)
    assert (1.016, ACK, ["a"]) in drain(s)


def test_defaults():
    (o,) = orderings_from_spec([{"first": OSU, "then": ACK}])
    assert o == Ordering(first=OSU, then=ACK, first_when="mentions-order", gap_s=0.0, orders=(), max_wait_s=2.0,
                         name="ordering[0]")
    (o,) = orderings_from_spec([{"first": OSU, "then": ACK, "orders": [7, 3], "max_wait": "0.2s"}])
    assert o.orders == (3, 7) and o.max_wait_s == pytest.approx(0.2)
    assert orderings_from_spec([{"first": OSU, "then": ACK, "orders": 3}])[0].orders == (3,)


# --- the loader ----------------------------------------------------------------------------------------------

BASE = """\
[scenario]
name = "o"
duration = "2s"
"""


def refused(tmp_path: Path, entries: str) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(BASE + textwrap.dedent(entries), encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ordering")
    return message


@pytest.mark.parametrize("entries, key, words", [
    ('[[ordering]]\nfirst = "OPEN_ORDERS_UPDATE"\nthen = "PLACE_LIMIT_WS_RESPONSE"\nbefore = "5ms"\n',
     "ordering[0].before", "unknown key"),
    ('[[ordering]]\nfirst = "OPEN_ORDERS_UPDATES"\nthen = "PLACE_LIMIT_WS_RESPONSE"\n',
     "ordering[0].first", "PLACE_LIMIT_WS_RESPONSE"),
    ('[[ordering]]\nfirst = "OPEN_ORDERS_UPDATE"\nthen = "NEW_TRADE"\n',
     "ordering[0].then", "not an account-stream message type that refers to an order"),
    ('[[ordering]]\nthen = "PLACE_LIMIT_WS_RESPONSE"\n', "ordering[0].first", "missing"),
    ('[[ordering]]\nfirst = "ORDER_STATUS_UPDATE"\nfirst_when = "omits-order"\nthen = "PLACE_LIMIT_WS_RESPONSE"\n',
     "ordering[0].first_when", "first must be OPEN_ORDERS_UPDATE"),
    ('[[ordering]]\nfirst = "OPEN_ORDERS_UPDATE"\nfirst_when = "lacks"\nthen = "PLACE_LIMIT_WS_RESPONSE"\n',
     "ordering[0].first_when", "mentions-order or omits-order"),
    ('[[ordering]]\nfirst = "ORDER_STATUS_UPDATE"\nthen = "ORDER_STATUS_UPDATE"\n',
     "ordering[0].then", "before itself"),
    ('[[ordering]]\nfirst = "ORDER_STATUS_UPDATE"\nthen = "PLACE_LIMIT_WS_RESPONSE"\ngap = "-5ms"\n',
     "ordering[0].gap", "negative"),
    ('[[ordering]]\nfirst = "ORDER_STATUS_UPDATE"\nthen = "PLACE_LIMIT_WS_RESPONSE"\nmax_wait = -1\n',
     "ordering[0].max_wait", "negative"),
    ('[[ordering]]\nfirst = "ORDER_STATUS_UPDATE"\nthen = "PLACE_LIMIT_WS_RESPONSE"\norders = 0\n',
     "ordering[0].orders", "every"),
    ('[[ordering]]\nfirst = "ORDER_STATUS_UPDATE"\nthen = "PLACE_LIMIT_WS_RESPONSE"\norders = "all"\n',
     "ordering[0].orders", "every"),
    ('[[ordering]]\nfirst = "ORDER_STATUS_UPDATE"\nthen = "PLACE_LIMIT_WS_RESPONSE"\norders = []\n',
     "ordering[0].orders", "empty"),
    ('[[ordering]]\nfirst = "ORDER_STATUS_UPDATE"\nthen = "PLACE_LIMIT_WS_RESPONSE"\norders = [3, "x"]\n',
     "ordering[0].orders[1]", "occurrence"),
    # A -> B and B -> A over a shared order
    ('[[ordering]]\nfirst = "ORDER_STATUS_UPDATE"\nthen = "PLACE_LIMIT_WS_RESPONSE"\norders = [2, 5]\n'
     '[[ordering]]\nfirst = "PLACE_LIMIT_WS_RESPONSE"\nthen = "ORDER_STATUS_UPDATE"\norders = 5\n',
     "ordering[1].then", "cycle of constraints for order 5"),
    # A -> B, B -> C, C -> A for every order
    ('[[ordering]]\nfirst = "ORDER_STATUS_UPDATE"\nthen = "PLACE_LIMIT_WS_RESPONSE"\n'
     '[[ordering]]\nfirst = "PLACE_LIMIT_WS_RESPONSE"\nthen = "ORDER_PROCESSED"\n'
     '[[ordering]]\nfirst = "ORDER_PROCESSED"\nthen = "ORDER_STATUS_UPDATE"\n',
     "ordering[2].then", "ordering[0] (ORDER_STATUS_UPDATE before PLACE_LIMIT_WS_RESPONSE)"),
    # the same (first, first_when, then) with another gap
    ('[[ordering]]\nfirst = "OPEN_ORDERS_UPDATE"\nfirst_when = "omits-order"\nthen = "PLACE_LIMIT_WS_RESPONSE"\n'
     'gap = "5ms"\n'
     '[[ordering]]\nfirst = "OPEN_ORDERS_UPDATE"\nfirst_when = "omits-order"\nthen = "PLACE_LIMIT_WS_RESPONSE"\n'
     'gap = "7ms"\norders = 3\n',
     "ordering[1].gap", "contradicts ordering[0]"),
    # another first timing the same message
    ('[[ordering]]\nfirst = "OPEN_ORDERS_UPDATE"\nfirst_when = "omits-order"\nthen = "PLACE_LIMIT_WS_RESPONSE"\n'
     '[[ordering]]\nfirst = "ORDER_PROCESSED"\nthen = "PLACE_LIMIT_WS_RESPONSE"\n',
     "ordering[1].then", "timed by one constraint only"),
])
def test_loader_refuses_naming_file_and_key(tmp_path, entries, key, words):
    message = refused(tmp_path, entries)
    assert f": {key}: " in message
    assert words in message


def test_loader_accepts_what_does_not_contradict(tmp_path):
    text = BASE + textwrap.dedent("""\
        [[ordering]]                       # A -> B for orders 1, 2 ...
        first = "ORDER_STATUS_UPDATE"
        then = "PLACE_LIMIT_WS_RESPONSE"
        orders = [1, 2]
        [[ordering]]                       # ... and B -> A for others: no order has both
        first = "PLACE_LIMIT_WS_RESPONSE"
        then = "ORDER_STATUS_UPDATE"
        orders = 3
        [[ordering]]                       # a snapshot omitting the order, then one listing it
        first = "OPEN_ORDERS_UPDATE"
        first_when = "omits-order"
        then = "OPEN_ORDERS_UPDATE"
        gap = "0.2s"
        """)
    scenario = loads_scenario(text, tmp_path / "ok.toml")
    assert [o["then"] for o in scenario.ordering] == ["PLACE_LIMIT_WS_RESPONSE", "ORDER_STATUS_UPDATE", OOU]
    assert [o.name for o in scenario.schedule().orderings] == ["ordering[0]", "ordering[1]", "ordering[2]"]


def test_ordering_must_be_an_array(tmp_path):
    with pytest.raises(ScenarioError, match=r"bad\.toml: ordering: expected an array of tables"):
        loads_scenario(BASE + '[ordering]\nfirst = "OPEN_ORDERS_UPDATE"\n', tmp_path / "bad.toml")


def test_direct_construction_checks_cycles_too():
    with pytest.raises(SpecError, match=r"ordering\[1\]\.then"):
        DeliverySchedule(0, orderings=[Ordering(first=OSU, then=ACK), Ordering(first=ACK, then=OSU)])


# --- a run ---------------------------------------------------------------------------------------------------

# Benign latencies: a placement reply (1 ms) always beats the snapshot built when the other order of the pair
# reached the book (engine 1..4 ms, then 3..6 ms), so no pending order is ever missing from a snapshot the bot
# handles before the order's reply.
FORCED = """\
[scenario]
name = "forced-race"
duration = "5s"
seed = 7

[latency]
default = "1ms..4ms"
engine = "1ms..4ms"
PLACE_LIMIT_WS_RESPONSE = "1ms"
OPEN_ORDERS_UPDATE = "3ms..6ms"

[bot]
policy = "naive"
bid_spread = 0.003
ask_spread = 0.003
filled_order_delay = "1s"

[expect]
max_open_orders = 2
open_orders_slack = 2
"""
CONSTRAINT = """
[[ordering]]
name = "snapshot-before-ack"
first = "OPEN_ORDERS_UPDATE"
first_when = "omits-order"
then = "PLACE_LIMIT_WS_RESPONSE"
gap = "5ms"
orders = "every"
"""


def _pending_false_cancels(records: list[dict]) -> list[str]:
    return [r["data"]["client_order_id"] for r in records
            if r["kind"] == "client" and r["type"] == "ORDER_STATE" and r["data"].get("from") == "PENDING_CREATE"
            and r["data"].get("reason") == "open_orders_update:absent"]


def test_the_constraint_forces_the_open_orders_race(tmp_path):
    forced = load_scenario(_write(tmp_path, "forced.toml", FORCED + CONSTRAINT))
    plain = load_scenario(_write(tmp_path, "plain.toml", FORCED))

    naive = run_scenario(forced, "naive", keep_records=True)
    assert "false_cancels" in naive.violated
    assert _pending_false_cancels(naive.records)  # a pending order cancelled by a snapshot that omits it
    # the trace shows the gap: each reply the constraint moved comes 5 ms after a snapshot on its connection
    ws = [r for r in naive.records if r["kind"] == "ws" and r["dir"] == "in" and r["conn"] == "account-1"]
    moved = [r for r in naive.records if r["type"] == "PERTURBATION" and r["data"]["name"] == "snapshot-before-ack"
             and r["data"]["msg_type"] == ACK]
    assert moved
    snapshot_times = {r["t"] for r in ws if r["type"] == OOU}
    reply_times = [r["t"] for r in ws if r["type"] == ACK]
    gapped = [t for t in reply_times if t - 5_000_000 in snapshot_times]
    assert len(gapped) >= len(moved) > 0

    assert "false_cancels" not in run_scenario(forced, "reconcile").violated

    # without the constraint no pending order is missed: the race does not happen by itself
    alone = run_scenario(plain, "naive", keep_records=True)
    assert _pending_false_cancels(alone.records) == []
    assert not [r for r in alone.records if r["type"] == "PERTURBATION"]


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path
