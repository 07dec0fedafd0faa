"""Invariant checks over hand-built traces: each held and violated, first violation named."""

from __future__ import annotations

import sys
import types

import pytest

from replay.checks import CHECK_NAMES, CheckSpec, build_timeline, run_checks

MS = 1_000_000


class Trace:
    """Builds record dicts in the captures/README.md format; times in milliseconds."""

    def __init__(self, header: bool = False):
        self.records: list[dict] = []
        if header:
            self.records.append({"format": "valr-replay-capture", "version": 1, "source": "simulated"})

    def add(self, t_ms, conn, dir, kind, type, data) -> int:
        self.records.append(
            {"t": int(t_ms * MS), "wall": "", "conn": conn, "dir": dir, "kind": kind, "type": type, "data": data}
        )
        return len(self.records) - 1

    def status(self, t_ms, oid, cid, status, account="demo") -> int:
        order = {"order_id": oid, "customer_order_id": cid, "account": account, "status": status, "pair": "BTCZAR"}
        data = {"ts_ms": 0, "account": account, "order": order}
        return self.add(t_ms, "exchange", "local", "event", "OrderStatusChanged", data)

    def failed(self, t_ms, oid, cid, message) -> int:
        data = {"ts_ms": 0, "account": "demo", "order_id": oid, "customer_order_id": cid, "message": message}
        return self.add(t_ms, "exchange", "local", "event", "OrderFailed", data)

    def client(self, t_ms, cid, frm, to, where="active", eid=None, reason="") -> int:
        data = {"client_order_id": cid, "exchange_order_id": eid, "from": frm, "to": to, "reason": reason,
                "where": where}
        return self.add(t_ms, "client", "local", "client", "ORDER_STATE", data)

    def strat(self, t_ms, type, cid) -> int:
        return self.add(t_ms, "strategy", "local", "strategy", type, {"client_order_id": cid})

    def meta(self, t_ms, type) -> int:
        return self.add(t_ms, "run", "local", "meta", type, {})

    def ws_in(self, t_ms, type, payload) -> int:
        return self.add(t_ms, "account-1", "in", "ws", type, {"type": type, "data": payload})


def run(trace, **kw) -> dict:
    return {r.name: r for r in run_checks(trace.records, CheckSpec(**kw))}


def lifecycle(tr: Trace, t0, cid, oid, place_ms=10, live_ms=1000, cancel_ms=20, strategy=True):
    """A healthy order: placed, acked, cancelled by the strategy, confirmed."""
    if strategy:
        tr.strat(t0, "CREATE", cid)
    tr.client(t0, cid, None, "PENDING_CREATE")
    tr.status(t0 + place_ms / 2, oid, cid, "Placed")
    tr.client(t0 + place_ms, cid, "PENDING_CREATE", "OPEN", eid=oid)
    tc = t0 + live_ms
    if strategy:
        tr.strat(tc, "CANCEL", cid)
    tr.client(tc + 1, cid, "OPEN", "PENDING_CANCEL", eid=oid)
    tr.status(tc + cancel_ms / 2, oid, cid, "Cancelled")
    tr.client(tc + cancel_ms, cid, "PENDING_CANCEL", "CANCELED", where="cached", eid=oid)


def healthy_run() -> Trace:
    tr = Trace(header=True)
    tr.meta(0, "RUN_START")
    for k in range(4):
        t0 = 1000 + 2000 * k
        lifecycle(tr, t0, f"b{k}", f"ob{k}")
        lifecycle(tr, t0, f"s{k}", f"os{k}")
    tr.meta(9000, "SHUTDOWN_BEGIN")
    tr.meta(9100, "SHUTDOWN_DONE")
    tr.meta(9200, "RUN_END")
    tr.records[1:] = sorted(tr.records[1:], key=lambda r: r["t"])  # a real trace is in time order
    return tr


ALL_THRESHOLDS = {
    "max_open_orders": 2,
    "nothing_open_after_shutdown": True,
    "orders_closed": True,
    "false_cancels": 0,
    "orphans_at_end": 0,
    "phantom_open": 0,
    "place_resolves": True,
    "cancel_resolves": True,
    "requote": True,
}


def test_healthy_run_holds_everything():
    res = run(healthy_run(), thresholds=ALL_THRESHOLDS)
    assert list(res) == list(CHECK_NAMES)
    for r in res.values():
        assert r.held is True, r.message
        assert r.first_violation is None and r.timeline == []
    assert res["max_open_orders"].figures["peak"] == 2
    assert res["place_resolves"].figures["p50_ms"] == 10.0
    assert res["cancel_resolves"].figures["p99_ms"] == 20.0
    assert res["requote"].figures["cancel_sets"] == 4
    assert res["requote"].figures["max_gap_ms"] == 1000.0


def test_no_thresholds_judges_every_check_by_its_default():
    res = run(healthy_run())
    for name, r in res.items():
        assert r.held is True, (name, r.message)
    assert res["max_open_orders"].figures["limit"] == 2  # the configured levels


def test_defaults_judge_an_absent_expect_and_false_switches_a_check_off():
    tr, _ = naive_race()
    res = run(tr)
    for name in ("false_cancels", "orphans", "nothing_open_after_shutdown", "orders_closed", "final_state_exit"):
        assert res[name].held is False, (name, res[name].message)
    off = run(tr, thresholds={"false_cancels": False, "orphans_at_end": False, "orders_closed": False})
    for name in ("false_cancels", "orphans", "orders_closed"):
        assert off[name].held is None and "switched off" in off[name].message
        assert off[name].first_violation is not None  # still named, for information
    assert off["nothing_open_after_shutdown"].held is False  # the others keep their defaults


# --- the race: naive false cancel, then the ack resurrects the order in the cache -----------


def naive_race() -> tuple[Trace, dict[str, int]]:
    tr = Trace()
    idx = {}
    tr.meta(0, "RUN_START")
    tr.strat(1000, "CREATE", "c1")
    tr.client(1000, "c1", None, "PENDING_CREATE")
    tr.ws_in(1003, "OPEN_ORDERS_UPDATE", [])  # stale snapshot, built before c1 reached the book
    idx["false"] = tr.client(1004, "c1", "PENDING_CREATE", "CANCELED", where="cached", reason="missing from snapshot")
    idx["placed"] = tr.status(1005, "o1", "c1", "Placed")
    idx["resurrect"] = tr.client(1008, "c1", "CANCELED", "OPEN", where="cached", eid="o1")
    tr.meta(5000, "SHUTDOWN_BEGIN")
    tr.meta(5100, "SHUTDOWN_DONE")
    return tr, idx


def test_false_cancel_with_ack_resurrection_is_false_cancel_and_orphan():
    tr, idx = naive_race()
    res = run(tr, thresholds=ALL_THRESHOLDS)
    fc = res["false_cancels"]
    assert fc.held is False and fc.figures["false_cancels"] == 1
    assert fc.figures["by_state"] == {"CANCELED": 1}
    assert fc.first_violation["index"] == idx["false"]
    assert fc.first_violation["record"] is tr.records[idx["false"]]
    orph = res["orphans"]
    assert orph.held is False and orph.figures["orphans"] == 1
    assert orph.first_violation["index"] == idx["false"]  # where the client stopped tracking it
    fse = res["final_state_exit"]
    assert fse.held is False and fse.first_violation["index"] == idx["resurrect"]
    assert fse.figures["transitions"] == {"CANCELED->OPEN": 1}
    left = res["nothing_open_after_shutdown"]
    assert left.held is False and left.figures["open_at_end"] == 1 and left.figures["open_at_shutdown_done"] == 1
    assert left.first_violation["index"] == idx["placed"]
    assert res["orders_closed"].figures["unclosed"] == 1
    assert res["phantom_open"].held is True
    # the timeline marks the violating record
    assert any(line.startswith(">>") and "CANCELED" in line for line in fc.timeline)
    assert "false_cancels FAILED" in fc.message


def test_final_state_exit_is_hard_by_default_and_can_be_switched_off():
    tr, _ = naive_race()
    assert run(tr)["final_state_exit"].held is False
    assert run(tr, thresholds={"final_state_exit": False})["final_state_exit"].held is None
    assert run(tr, thresholds={"final_state_exits": 1})["final_state_exit"].held is True


def test_cancel_confirmed_within_grace_is_not_false():
    tr = Trace()
    tr.client(0, "c1", None, "PENDING_CREATE")
    tr.status(5, "o1", "c1", "Placed")
    tr.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o1")
    tr.client(1000, "c1", "OPEN", "CANCELED", where="cached", eid="o1")  # believed before the exchange
    tr.status(1500, "o1", "c1", "Cancelled")  # ... which confirms within grace
    tr.meta(6000, "RUN_END")
    res = run(tr, thresholds={"false_cancels": 0, "orphans": 0})
    assert res["false_cancels"].held is True and res["orphans"].held is True


def test_lost_order_is_tracked_not_false_cancelled():
    tr = Trace()
    tr.client(0, "c1", None, "PENDING_CREATE")
    tr.status(5, "o1", "c1", "Placed")
    tr.client(100, "c1", "PENDING_CREATE", "FAILED", where="lost", reason="not found x4")
    tr.meta(6000, "RUN_END")
    res = run(tr, thresholds={"false_cancels": 0, "orphans_at_end": 0})
    assert res["false_cancels"].held is True
    assert res["false_cancels"].figures["lost_while_open"] == 1
    assert res["orphans"].held is True  # still in the lost set: the connector keeps cancelling it


def test_order_unknown_to_client_is_an_orphan():
    tr = Trace()
    tr.client(0, "c1", None, "PENDING_CREATE")
    tr.status(5, "o1", "c1", "Placed")
    tr.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o1")
    stray = tr.status(20, "o2", "x9", "Placed")
    res = run(tr, thresholds={"orphans": 0})
    assert res["orphans"].figures == {"orphans": 1, "unknown_to_client": 1, "order_ids": ["o2"]}
    assert res["orphans"].first_violation["index"] == stray


# --- max_open_orders ----------------------------------------------------------------------


def test_max_open_orders_violation_names_the_third_open_order():
    tr = Trace()
    tr.status(0, "o1", "c1", "Placed")
    tr.status(1, "o2", "c2", "Placed")
    tr.status(1200, "o1", "c1", "Cancelled")
    tr.status(1300, "o3", "c3", "Placed")
    third = tr.status(1400, "o4", "c4", "Placed")  # o2 never cancelled: 3 open
    tr.status(1500, "o5", "c5", "Placed")
    tr.meta(3500, "RUN_END")
    r = run(tr, thresholds={"max_open_orders": 2})["max_open_orders"]
    assert r.held is False
    assert r.first_violation["index"] == third
    assert r.figures["peak"] == 4 and r.figures["final"] == 4
    assert r.figures["per_cycle_max"] == [2, 4, 4, 4]
    assert r.figures["cycles_above_limit"] == 3
    assert any(line.startswith(">>") and "o4" in line for line in r.timeline)


def test_max_open_orders_slack_allows_short_excursions_only():
    def trace(overlap_ms):
        tr = Trace()
        tr.status(0, "o1", "c1", "Placed")
        tr.status(0, "o2", "c2", "Placed")
        start = tr.status(1000, "o3", "c3", "Placed")
        tr.status(1000 + overlap_ms, "o1", "c1", "Cancelled")
        tr.meta(6000, "RUN_END")
        return tr, start

    tr, _ = trace(500)
    assert run(tr, slack=1, thresholds={"max_open_orders": 2})["max_open_orders"].held is True
    assert run(tr, thresholds={"max_open_orders": 2})["max_open_orders"].held is False
    tr, start = trace(2500)  # above the limit for longer than grace_s = 2
    r = run(tr, slack=1, thresholds={"max_open_orders": 2})["max_open_orders"]
    assert r.held is False and r.first_violation["index"] == start
    assert "longer than" in r.first_violation["what"]


def test_max_open_orders_slack_exceeded_fails_at_once():
    tr = Trace()
    for k in range(3):
        tr.status(k, f"o{k}", f"c{k}", "Placed")
    fourth = tr.status(3, "o3", "c3", "Placed")
    tr.status(4, "o3", "c3", "Cancelled")
    r = run(tr, slack=1, thresholds={"max_open_orders": 2})["max_open_orders"]
    assert r.held is False and r.first_violation["index"] == fourth


def test_max_open_orders_defaults_to_the_levels_and_can_be_switched_off():
    tr = Trace()
    for k in range(3):
        tr.status(k, f"o{k}", f"c{k}", "Placed")
    r = run(tr)["max_open_orders"]
    assert r.held is False and r.figures["peak"] == 3 and r.figures["limit"] == 2
    assert run(tr, levels=4)["max_open_orders"].held is True
    r = run(tr, thresholds={"max_open_orders": False})["max_open_orders"]
    assert r.held is None and r.figures["peak"] == 3
    assert r.first_violation is not None  # named for information


def test_other_accounts_are_ignored():
    tr = Trace()
    tr.status(0, "o1", "c1", "Placed")
    tr.status(1, "o2", "c2", "Placed")
    tr.status(2, "m1", "mm-1", "Placed", account="market-maker")
    r = run(tr, thresholds={"max_open_orders": 2})
    assert r["max_open_orders"].held is True and r["nothing_open_after_shutdown"].figures["open_at_end"] == 2


# --- duplicates ---------------------------------------------------------------------------


def test_duplicate_orders_accepted_and_failed_attempts():
    tr = Trace()
    tr.status(0, "o1", "c1", "Placed")
    dup = tr.status(10, "o2", "c1", "Placed")  # accepted although c1 is live
    tr.failed(20, "o3", "c1", "Duplicate customer order id's are not allowed")
    tr.status(30, "o1", "c1", "Cancelled")
    tr.status(40, "o4", "c1", "Placed")  # o2 still live with c1: another duplicate
    r = run(tr)["duplicate_orders"]
    assert r.held is False
    assert r.figures["duplicates"] == 2 and r.figures["failed_duplicate_attempts"] == 1
    assert r.first_violation["index"] == dup


def test_failed_duplicate_attempt_alone_holds():
    tr = Trace()
    tr.status(0, "o1", "c1", "Placed")
    tr.failed(20, "o3", "c1", "Duplicate customer order id's are not allowed")
    tr.status(30, "o1", "c1", "Cancelled")
    tr.status(40, "o5", "c1", "Placed")  # reuse after the first closed: allowed by VALR
    r = run(tr)["duplicate_orders"]
    assert r.held is True and r.figures == {
        "duplicates": 0,
        "intent_duplicates": 0,
        "failed_duplicate_attempts": 1,
        "cids": [],
        "intents": [],
        "source": "events",
    }


# --- shutdown / closed --------------------------------------------------------------------


def test_shutdown_leaves_order_open_then_cancel_on_disconnect_cleans_up():
    tr = Trace()
    tr.status(0, "o1", "c1", "Placed")
    placed = tr.status(1, "o2", "c2", "Placed")
    tr.meta(100, "SHUTDOWN_BEGIN")
    tr.status(150, "o1", "c1", "Cancelled")
    done = tr.meta(200, "SHUTDOWN_DONE")
    r = run(tr, thresholds={"nothing_open_after_shutdown": True})["nothing_open_after_shutdown"]
    assert r.held is False and r.figures["open_at_end"] == 1 and r.first_violation["index"] == placed
    # cancel-on-disconnect after SHUTDOWN_DONE: judged on the end state
    tr.status(300, "o2", "c2", "Cancelled")
    r = run(tr, thresholds={"open_after_shutdown": 0})["nothing_open_after_shutdown"]
    assert r.held is True and r.figures["open_at_shutdown_done"] == 1
    assert done  # the meta record exists


def test_no_shutdown_record_judges_the_last_record():
    tr = Trace()
    tr.status(0, "o1", "c1", "Placed")
    r = run(tr, thresholds={"nothing_open_after_shutdown": True})["nothing_open_after_shutdown"]
    assert r.held is False and "no SHUTDOWN_DONE" in r.first_violation["what"]


def test_orders_closed_age_limit():
    tr = Trace()
    tr.status(0, "o1", "c1", "Placed")
    tr.status(500, "o1", "c1", "Cancelled")
    old = tr.status(1000, "o2", "c2", "Placed")
    tr.status(6000, "o2", "c2", "Cancelled")
    r = run(tr, thresholds={"orders_closed": True, "max_order_age_cycles": 3})["orders_closed"]
    assert r.figures["unclosed"] == 0 and r.figures["max_open_cycles"] == 5.0
    assert r.held is False and r.first_violation["index"] == old
    assert run(tr, thresholds={"orders_closed": True})["orders_closed"].held is True


# --- phantom open ------------------------------------------------------------------------


def test_phantom_open_when_the_exchange_never_had_the_order():
    tr = Trace()
    tr.client(0, "c1", None, "PENDING_CREATE")
    believed = tr.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o1")  # ack, but o1 failed
    tr.status(11, "o1", "c1", "Failed")
    tr.meta(5000, "RUN_END")
    r = run(tr, thresholds={"phantom_open": 0})["phantom_open"]
    assert r.held is False and r.first_violation["index"] == believed


def test_phantom_open_starts_when_the_exchange_closes_it():
    tr = Trace()
    tr.client(0, "c1", None, "PENDING_CREATE")
    tr.status(5, "o1", "c1", "Placed")
    tr.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o1")
    gone = tr.status(1000, "o1", "c1", "Cancelled")  # the client never hears of it
    tr.meta(4000, "RUN_END")
    r = run(tr, thresholds={"phantom_open": 0})["phantom_open"]
    assert r.held is False and r.first_violation["index"] == gone
    # caught up within grace: fine
    tr2 = Trace()
    tr2.client(0, "c1", None, "PENDING_CREATE")
    tr2.status(5, "o1", "c1", "Placed")
    tr2.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o1")
    tr2.status(1000, "o1", "c1", "Cancelled")
    tr2.client(1100, "c1", "OPEN", "CANCELED", where="cached", eid="o1")
    tr2.meta(4000, "RUN_END")
    assert run(tr2, thresholds={"phantom_open": 0})["phantom_open"].held is True


def test_resurrected_order_in_the_cache_is_not_a_phantom():
    tr = Trace()
    tr.client(0, "c1", None, "PENDING_CREATE")
    tr.client(2, "c1", "PENDING_CREATE", "CANCELED", where="cached")
    tr.status(3, "o1", "c1", "Placed")
    tr.client(4, "c1", "CANCELED", "OPEN", where="cached", eid="o1")
    tr.status(1000, "o1", "c1", "Filled")  # the client never looks at cached orders again
    tr.meta(5000, "RUN_END")
    res = run(tr, thresholds={"phantom_open": 0, "final_state_exit": 0})
    assert res["phantom_open"].held is True and res["final_state_exit"].held is False


# --- latency checks ----------------------------------------------------------------------


def test_place_resolves_late_and_unresolved():
    tr = Trace()
    for k in range(3):
        tr.client(k, f"c{k}", None, "PENDING_CREATE")
        tr.client(k + 20, f"c{k}", "PENDING_CREATE", "OPEN")
    slow = tr.client(100, "slow", None, "PENDING_CREATE")
    stuck = tr.client(50, "stuck", None, "PENDING_CREATE")  # earlier deadline than "slow"
    tr.client(6000, "slow", "PENDING_CREATE", "OPEN")
    tr.client(9000, "young", None, "PENDING_CREATE")  # pending at the end, not yet late
    tr.meta(9500, "RUN_END")
    r = run(tr, thresholds={"place_resolves": True})["place_resolves"]
    assert r.held is False
    assert r.figures["late_or_unresolved"] == 2 and r.figures["pending_at_end"] == 1
    assert r.first_violation["index"] == stuck
    assert r.figures["p50_ms"] == 20.0 and r.figures["max_ms"] == 5900.0
    assert slow != stuck
    r = run(tr, thresholds={"place_p99_ms": 100})["place_resolves"]
    assert r.held is False and "p99_ms" in r.message


def test_cancel_resolves_from_strategy_and_wire_requests():
    tr = Trace()
    lifecycle(tr, 0, "c1", "o1", cancel_ms=40)
    tr.client(2000, "c2", None, "PENDING_CREATE")
    tr.status(2005, "o2", "c2", "Placed")
    tr.client(2010, "c2", "PENDING_CREATE", "OPEN", eid="o2")
    req = tr.add(3000, "account-1", "out", "ws", "CANCEL_LIMIT_ORDER",
                 {"type": "CANCEL_LIMIT_ORDER", "payload": {"orderId": "o2", "pair": "BTCZAR"}})
    tr.meta(9000, "RUN_END")
    r = run(tr, thresholds={"cancel_resolves": True})["cancel_resolves"]
    assert r.held is False and r.first_violation["index"] == req
    assert r.figures["p50_ms"] == 40.0 and r.figures["late_or_unresolved"] == 1
    assert "never resolved" in r.first_violation["what"]


# --- requote -------------------------------------------------------------------------------


def test_requote_stall_is_flagged_but_not_at_shutdown():
    tr = Trace()
    tr.strat(1000, "CREATE", "b1")
    tr.strat(1000, "CREATE", "s1")
    first_cancel = tr.strat(2000, "CANCEL", "b1")
    tr.strat(2000, "CANCEL", "s1")
    tr.meta(8000, "SHUTDOWN_BEGIN")
    tr.client(8000, "b1", "OPEN", "CANCELED", where="cached")
    r = run(tr, thresholds={"requote": True})["requote"]
    assert r.held is False and r.first_violation["index"] == first_cancel
    assert r.figures["cancel_sets"] == 1
    tr2 = Trace()
    tr2.strat(1000, "CREATE", "b1")
    tr2.strat(6000, "CANCEL", "b1")
    tr2.meta(7000, "SHUTDOWN_BEGIN")
    tr2.client(7000, "b1", "OPEN", "CANCELED", where="cached")
    assert run(tr2, thresholds={"requote": True})["requote"].held is True


def test_requote_exempts_a_cycle_with_a_fill():
    tr = Trace()
    tr.strat(1000, "CREATE", "b1")
    tr.strat(1000, "CREATE", "s1")
    tr.client(1500, "s1", "OPEN", "FILLED", where="cached")  # PMM now waits filled_order_delay
    tr.strat(2000, "CANCEL", "b1")
    tr.client(2010, "b1", "OPEN", "CANCELED", where="cached")
    tr.meta(9000, "SHUTDOWN_BEGIN")
    r = run(tr, thresholds={"requote": True})["requote"]
    assert r.held is True and r.figures["exempt_after_fill"] == 1


def test_requote_skipped_without_strategy_records():
    tr = Trace()
    tr.status(0, "o1", "c1", "Placed")
    r = run(tr, thresholds={"requote": True})["requote"]
    assert r.held is None and "no strategy records" in r.message


# --- sources, inputs, timelines -------------------------------------------------------------


def test_wire_fallback_uses_snapshots_and_status_updates():
    tr = Trace()
    tr.ws_in(0, "OPEN_ORDERS_UPDATE",
             [{"orderId": "o1", "customerOrderId": "c1"}, {"orderId": "o2", "customerOrderId": "c2"}])
    over = tr.ws_in(100, "ORDER_STATUS_UPDATE", {"orderId": "o3", "customerOrderId": "c3", "orderStatusType": "Placed"})
    tr.ws_in(200, "OPEN_ORDERS_UPDATE", [{"orderId": "o3", "customerOrderId": "c3"}])
    res = run(tr, thresholds={"max_open_orders": 2, "nothing_open_after_shutdown": True})
    r = res["max_open_orders"]
    assert r.figures["source"] == "wire" and r.held is False and r.first_violation["index"] == over
    assert res["nothing_open_after_shutdown"].figures["open_at_end"] == 1
    assert res["false_cancels"].held is None and "no client" in res["false_cancels"].message


def test_empty_trace_is_not_judged():
    res = run(Trace())
    assert all(r.held is None for r in res.values()) or res["duplicate_orders"].held is None


@pytest.mark.parametrize(
    "thresholds, fragment",
    [
        ({"max_open_order": 2}, "unknown key 'max_open_order'"),
        ({"false_cancels": -1}, "false_cancels"),
        ({"orphans_at_end": "none"}, "orphans_at_end"),
        ({"place_p99_ms": True}, "place_p99_ms"),
    ],
)
def test_bad_thresholds_name_the_key(thresholds, fragment):
    with pytest.raises(ValueError, match=fragment):
        run_checks([], CheckSpec(thresholds=thresholds))


def test_bad_records_name_the_index_and_field():
    tr = healthy_run()
    del tr.records[5]["t"]
    with pytest.raises(ValueError, match=r"record 5: field 't'"):
        run_checks(tr.records, CheckSpec())
    tr = Trace()
    tr.add(0, "client", "local", "client", "ORDER_STATE", {"to": "OPEN"})
    with pytest.raises(ValueError, match=r"record 0 .*client_order_id"):
        run_checks(tr.records, CheckSpec())
    with pytest.raises(ValueError, match="grace_s"):
        run_checks([], CheckSpec(grace_s=-1))


def _noise(tr: Trace, t_ms, n):
    for k in range(n):
        tr.add(t_ms, "trade-1", "in", "ws", "AGGREGATED_ORDERBOOK_UPDATE", {"k": k})


def test_timeline_window_and_same_order_records(monkeypatch):
    monkeypatch.setitem(sys.modules, "replay.show", types.ModuleType("replay.show"))  # no show.timeline
    tr = Trace()
    early = tr.client(0, "c1", None, "PENDING_CREATE")
    _noise(tr, 50, 20)
    center = tr.status(100, "o1", "c1", "Placed")
    _noise(tr, 150, 20)
    late_far = tr.client(400, "c1", "PENDING_CREATE", "OPEN", eid="o1")  # beyond ±200 ms
    lines = build_timeline(tr.records, center, {"c1", "o1"})
    marked = [ln for ln in lines if ln.startswith(">>")]
    assert len(marked) == 1 and f"{center:>6}" in marked[0]
    window = lines[: lines.index("  ... same order within ±200 ms:")]
    assert len(window) == 17
    extras = lines[len(window) + 1 :]
    assert len(extras) == 1 and "PENDING_CREATE" in extras[0] and f"{early:>6}" in extras[0]
    assert not any(f"{late_far:>6} " in ln for ln in lines)


def test_timeline_uses_show_when_available(monkeypatch):
    mod = types.ModuleType("replay.show")
    calls = []

    def timeline(records, center_index, before, after):
        calls.append((center_index, before, after))
        return ["from show"]

    mod.timeline = timeline
    monkeypatch.setitem(sys.modules, "replay.show", mod)
    tr, idx = naive_race()
    r = run(tr, thresholds={"false_cancels": 0})["false_cancels"]
    assert (idx["false"], 8, 8) in calls
    assert r.timeline == ["from show"]


def test_max_open_orders_true_means_the_configured_levels():
    tr = Trace()
    for k in range(3):
        tr.status(k, f"o{k}", f"c{k}", "Placed")
    assert run(tr, levels=4, thresholds={"max_open_orders": True})["max_open_orders"].held is True
    assert run(tr, levels=2, thresholds={"max_open_orders": True})["max_open_orders"].held is False


def test_in_memory_records_holding_event_objects():
    from decimal import Decimal

    from replay.exchange.events import OrderStatusChanged
    from replay.exchange.model import OrderStatus, OrderType, OrderView, Side, TimeInForce

    def view(oid, status):
        return OrderView(oid, "demo", "BTCZAR", Side.BUY, OrderType.LIMIT, TimeInForce.GTC, Decimal("1"),
                         Decimal("1"), Decimal("1"), status, 0, 0, customer_order_id="c-" + oid)

    tr = Trace()
    for k, oid in enumerate(("a", "b", "c")):
        tr.add(k, "exchange", "local", "event", "OrderStatusChanged",
               OrderStatusChanged(0, "demo", view(oid, OrderStatus.PLACED)))
    tr.add(5, "exchange", "local", "event", "OrderStatusChanged",
           OrderStatusChanged(0, "demo", view("a", OrderStatus.CANCELLED)))
    r = run(tr, thresholds={"max_open_orders": 2})["max_open_orders"]
    assert r.figures["peak"] == 3 and r.figures["final"] == 2 and r.first_violation["index"] == 2


# --- final outcome -------------------------------------------------------------------------


def filled(tr: Trace, t_ms, oid, cid, qty="0.001", status="Filled") -> int:
    order = {"order_id": oid, "customer_order_id": cid, "account": "demo", "status": status, "pair": "BTCZAR",
             "filled_quantity": qty}
    return tr.add(t_ms, "exchange", "local", "event", "AccountTrade", {"ts_ms": 0, "account": "demo", "order": order})


def test_final_outcome_catches_canceled_while_the_exchange_filled_it():
    tr = Trace()
    tr.client(0, "c1", None, "PENDING_CREATE")
    tr.status(5, "o1", "c1", "Placed")
    tr.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o1")
    tr.client(1000, "c1", "OPEN", "PENDING_CANCEL", eid="o1")
    declared = tr.client(1010, "c1", "PENDING_CANCEL", "CANCELED", where="cached", eid="o1")  # took the ack as final
    filled(tr, 1020, "o1", "c1")  # the taker got there first
    tr.meta(5000, "RUN_END")
    r = run(tr)["final_outcome"]
    assert r.held is False and r.figures["mismatches"] == 1
    assert r.figures["by_kind"] == {"CANCELED vs Filled": 1} and r.figures["cids"] == ["c1"]
    assert r.first_violation["index"] == declared
    assert run(tr, thresholds={"final_outcome": False})["final_outcome"].held is None
    assert run(tr, thresholds={"final_outcome_mismatches": 1})["final_outcome"].held is True


def test_final_outcome_catches_an_executed_amount_mismatch():
    tr = Trace()
    tr.client(0, "c1", None, "PENDING_CREATE")
    tr.status(5, "o1", "c1", "Placed")
    tr.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o1")
    filled(tr, 500, "o1", "c1", qty="0.0004", status="Partially Filled")  # the client misses this fill
    tr.status(1000, "o1", "c1", "Cancelled")
    i = tr.client(1010, "c1", "OPEN", "CANCELED", where="cached", eid="o1")
    tr.records[i]["data"]["executed_amount_base"] = "0"
    tr.meta(5000, "RUN_END")
    r = run(tr)["final_outcome"]
    assert r.held is False and r.first_violation["index"] == i
    assert list(r.figures["by_kind"]) == ["CANCELED executed 0 vs 0.0004"]
    # the same run where the client saw the fill: holds
    tr.records[i]["data"]["executed_amount_base"] = "0.00040000"
    assert run(tr)["final_outcome"].held is True


def test_final_outcome_holds_on_an_honest_run_and_ignores_lost_and_open_orders():
    res = run(healthy_run())
    assert res["final_outcome"].held is True and res["final_outcome"].figures["judged"] == 8
    tr = Trace()
    tr.client(0, "c1", None, "PENDING_CREATE")
    tr.status(5, "o1", "c1", "Placed")
    tr.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o1")
    tr.client(3000, "c1", "OPEN", "FAILED", where="lost", eid="o1")  # unknown: keep cancelling
    filled(tr, 3100, "o1", "c1")
    tr.client(0, "c2", None, "PENDING_CREATE")
    tr.status(5, "o2", "c2", "Placed")
    tr.client(10, "c2", "PENDING_CREATE", "CANCELED", where="cached", eid="o2")  # still open: orphans' business
    tr.meta(5000, "RUN_END")
    r = run(tr)["final_outcome"]
    assert r.held is True and r.figures["lost"] == 1 and r.figures["not_final_on_exchange"] == 1


def test_final_outcome_ignores_a_refused_duplicate_attempt():
    tr = Trace()
    tr.client(0, "c1", None, "PENDING_CREATE")
    tr.status(5, "o1", "c1", "Placed")
    tr.failed(8, "o2", "c1", "Duplicate customer order id's are not allowed")  # a re-send, refused
    tr.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o2")
    tr.status(1000, "o1", "c1", "Cancelled")
    tr.client(1010, "c1", "OPEN", "CANCELED", where="cached", eid="o2")
    tr.meta(5000, "RUN_END")
    assert run(tr)["final_outcome"].held is True


# --- phantom open through PENDING_CANCEL ----------------------------------------------------


def test_phantom_open_through_pending_cancel_inside_grace():
    tr = Trace()
    tr.client(0, "c1", None, "PENDING_CREATE")
    believed = tr.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o1")  # ack, but o1 failed
    tr.status(11, "o1", "c1", "Failed")
    tr.client(1000, "c1", "OPEN", "PENDING_CANCEL", eid="o1")  # inside the 2 s grace
    tr.meta(6000, "RUN_END")
    r = run(tr)["phantom_open"]
    assert r.held is False and r.first_violation["index"] == believed
    # an ordinary cancel: the exchange confirms, the client follows within grace
    ok = Trace()
    ok.client(0, "c1", None, "PENDING_CREATE")
    ok.status(5, "o1", "c1", "Placed")
    ok.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o1")
    ok.client(1000, "c1", "OPEN", "PENDING_CANCEL", eid="o1")
    ok.status(1005, "o1", "c1", "Cancelled")
    ok.client(1500, "c1", "PENDING_CANCEL", "CANCELED", where="cached", eid="o1")
    ok.meta(6000, "RUN_END")
    assert run(ok)["phantom_open"].held is True
    # being cancelled long after the exchange closed it: still believed on the book
    late = Trace()
    late.client(0, "c1", None, "PENDING_CREATE")
    late.status(5, "o1", "c1", "Placed")
    late.client(10, "c1", "PENDING_CREATE", "OPEN", eid="o1")
    gone = late.status(900, "o1", "c1", "Cancelled")
    late.client(1000, "c1", "OPEN", "PENDING_CANCEL", eid="o1")
    late.meta(6000, "RUN_END")
    r = run(late)["phantom_open"]
    assert r.held is False and r.first_violation["index"] == gone


# --- duplicates per strategy intent -------------------------------------------------------


def create(tr: Trace, t_ms, cid, side, **intent) -> int:
    return tr.add(t_ms, "strategy", "local", "strategy", "CREATE", {"client_order_id": cid, "side": side, **intent})


def test_intent_duplicate_under_a_new_customer_order_id():
    tr = Trace()
    create(tr, 0, "b1", "buy", intent="c1/buy/0")
    create(tr, 0, "s1", "sell", intent="c1/sell/0")
    tr.status(5, "ob1", "b1", "Placed")
    tr.status(5, "os1", "s1", "Placed")
    # the same intent re-sent under a new customerOrderId while b1 is still on the book
    create(tr, 2990, "b1-retry", "buy", intent="c1/buy/0")
    tr.status(3000, "ob1x", "b1-retry", "Placed")
    tr.meta(5000, "RUN_END")
    r = run(tr, thresholds={"max_open_orders": False})["duplicate_orders"]
    assert r.held is False and r.figures["intent_duplicates"] == 1 and r.figures["duplicates"] == 0
    assert r.figures["intents"] == ["c1/buy/0"]
    assert r.first_violation["record"]["data"]["order"]["order_id"] == "ob1x"


def test_intent_derived_from_create_timing_without_intent_fields():
    tr = Trace()
    create(tr, 0, "b1", "buy")
    create(tr, 1, "s1", "sell")
    create(tr, 50, "b2", "buy")  # same cycle, second buy: level 1, a different intent
    create(tr, 2000, "b3", "buy")  # next cycle
    tr.status(5, "ob1", "b1", "Placed")
    tr.status(5, "os1", "s1", "Placed")
    tr.status(55, "ob2", "b2", "Placed")
    tr.status(1000, "ob1", "b1", "Cancelled")
    tr.status(1000, "os1", "s1", "Cancelled")
    tr.status(1000, "ob2", "b2", "Cancelled")
    tr.status(2005, "ob3", "b3", "Placed")
    tr.meta(5000, "RUN_END")
    assert run(tr)["duplicate_orders"].figures["intent_duplicates"] == 0
    # the same cycle's buy level 0 twice (cycle grouping within 100 ms)
    dup = Trace()
    create(dup, 0, "b1", "buy")
    create(dup, 1, "s1", "sell")
    dup.status(5, "ob1", "b1", "Placed")
    dup.status(5, "os1", "s1", "Placed")
    # an order for b1's intent re-sent under a new id: the strategy record names the same cycle
    create(dup, 60, "b1-again", "buy", cycle=0, level=0)
    dup.status(65, "ob9", "b1-again", "Placed")
    dup.meta(5000, "RUN_END")
    r = run(dup)["duplicate_orders"]
    assert r.held is False and r.figures["intent_duplicates"] == 1


def test_strategy_create_records_name_their_intent():
    from replay.checks import strategy_intents

    tr = Trace()
    create(tr, 0, "b1", "buy", intent="c7/buy/0")
    create(tr, 0, "s1", "sell", cycle=7, level=0)
    create(tr, 3000, "s2", "sell")
    assert strategy_intents(tr.records) == {"b1": "c7/buy/0", "s1": "c7/sell/0", "s2": "c1/sell/0"}
