"""The shipped race scenarios: each file run as shipped (virtual time), once per policy.

Every run must come out as its ``[expect.policy.*]`` tables declare (``as_expected``), and
the figures that make each scenario's point are checked on top: the fault really happened
(the perturbation fired, the exchange rejected a duplicate, the stream reconnected...) and
the policy that should hold shows none of its effects.
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from replay.checks import CheckSpec, run_checks
from replay.runner import RunResult, run_scenario
from replay.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

CASES = [
    ("open_orders_race", "naive"),
    ("open_orders_race", "ignore"),
    ("open_orders_race", "reconcile"),
    ("stale_snapshot", "naive"),
    ("stale_snapshot", "age-guard:5"),
    ("stale_snapshot", "ignore"),
    ("stale_snapshot", "reconcile"),
    ("cancel_ack_not_final", "naive"),
    ("cancel_ack_not_final", "ignore"),
    ("cancel_ack_not_final", "reconcile"),
    ("ws_timeout_duplicate", "naive"),
    ("ws_timeout_duplicate", "ignore"),
    ("ws_timeout_duplicate", "reconcile"),
    ("account_ws_disconnect", "naive"),
    ("account_ws_disconnect", "ignore"),
    ("account_ws_disconnect", "reconcile"),
    ("account_ws_reconnect_snapshot", "naive"),
    ("account_ws_reconnect_snapshot", "age-guard:5"),
    ("account_ws_reconnect_snapshot", "ignore"),
    ("account_ws_reconnect_snapshot", "reconcile"),
    ("from_log_seed_report", "naive"),
    ("from_log_seed_report", "reconcile"),
]
HOLDING = ("ignore", "reconcile")


@functools.lru_cache(maxsize=None)
def result(name: str, policy: str) -> RunResult:
    return run_scenario(load_scenario(SCENARIOS / f"{name}.toml"), policy, keep_records=True)


def checks(r: RunResult) -> dict[str, Any]:
    return {c.name: c for c in r.checks}


def fig(r: RunResult, check: str, figure: str) -> Any:
    return checks(r)[check].figures[figure]


def data(rec: dict[str, Any]) -> dict[str, Any]:
    d = rec.get("data")
    return d if isinstance(d, dict) else {}


def client_states(r: RunResult) -> list[dict[str, Any]]:
    return [data(x) for x in r.records if x["kind"] == "client" and x["type"] == "ORDER_STATE"]


def delivered(r: RunResult, msg_type: str) -> list[dict[str, Any]]:
    return [x for x in r.records if x["kind"] == "ws" and x.get("dir") == "in" and x["type"] == msg_type]


def perturbations(r: RunResult, name: str) -> list[dict[str, Any]]:
    return [data(x) for x in r.records if x["type"] == "PERTURBATION" and data(x).get("name") == name]


def assert_clean(r: RunResult) -> None:
    """The policy under test kept the books straight."""
    assert fig(r, "max_open_orders", "peak") <= 2 + 2
    assert fig(r, "false_cancels", "false_cancels") == 0
    assert fig(r, "orphans", "orphans") == 0
    assert fig(r, "nothing_open_after_shutdown", "open_at_end") == 0
    assert fig(r, "final_state_exit", "exits") == 0


def assert_piles_up(r: RunResult) -> None:
    assert fig(r, "false_cancels", "false_cancels") > 0
    assert fig(r, "orphans", "orphans") > 0
    assert fig(r, "max_open_orders", "peak") > 2
    assert fig(r, "nothing_open_after_shutdown", "open_at_end") > 0


# --- per scenario: what makes its point --------------------------------------------------


def point_open_orders_race(r: RunResult, policy: str) -> None:
    if policy == "naive":
        assert_piles_up(r)
        assert fig(r, "max_open_orders", "peak") > 10  # one leaked order per cycle or so
    else:
        assert_clean(r)
        assert fig(r, "max_open_orders", "peak") <= 2


def point_stale_snapshot(r: RunResult, policy: str) -> None:
    # The fault fired: old snapshots were re-delivered 7 s after newer ones.
    assert perturbations(r, "stale-snapshot-7s")
    if policy in ("naive", "age-guard:5"):
        assert_piles_up(r)
    if policy == "age-guard:5":
        # Fooled only by the stale copies: every false cancel hit an order older than the
        # guard's 5 s, and there is no resurrection (the placement ack came long before).
        created: dict[str, int] = {}
        for x in r.records:
            d = data(x)
            if x["kind"] == "client" and x["type"] == "ORDER_STATE":
                if d.get("to") == "PENDING_CREATE":
                    created[d["client_order_id"]] = x["t"]
                elif d.get("to") == "CANCELED" and d.get("reason") == "open_orders_update:absent":
                    assert x["t"] - created[d["client_order_id"]] > 5e9
        assert fig(r, "final_state_exit", "exits") == 0
    if policy in HOLDING:
        assert_clean(r)
        assert fig(r, "max_open_orders", "peak") <= 2


def point_cancel_ack_not_final(r: RunResult, policy: str) -> None:
    states = client_states(r)
    if policy == "naive":
        assert fig(r, "false_cancels", "false_cancels") > 0
        assert fig(r, "final_state_exit", "exits") > 0
        return
    assert_clean(r)
    # Cancels were acked (requested: true), then the order filled before the engine got to
    # the cancel, which failed: the connector kept the order PENDING_CANCEL until "Filled".
    assert any(d["from"] == "OPEN" and d["to"] == "PENDING_CANCEL" and d["reason"] == "cancel_ack" for d in states)
    ack_then_fill = {d["client_order_id"] for d in states if d["from"] == "PENDING_CANCEL" and d["to"] == "FILLED"}
    assert ack_then_fill
    acks = [data(x)["data"] for x in delivered(r, "CANCEL_ORDER_WS_RESPONSE")]
    assert acks and all(a.get("requested") is True for a in acks)
    assert delivered(r, "FAILED_CANCEL_ORDER")
    # No order the exchange filled was ever believed cancelled.
    filled = {
        data(x)["order"]["customer_order_id"]
        for x in r.records
        if x["kind"] == "event" and x["type"] == "OrderStatusChanged" and data(x)["order"]["status"] == "Filled"
    }
    assert ack_then_fill <= filled
    believed_cancelled = {d["client_order_id"] for d in states if d["to"] == "CANCELED"}
    assert not (filled & believed_cancelled)
    resolves = checks(r)["cancel_resolves"]
    assert resolves.held is True and resolves.figures["late_or_unresolved"] == 0


def point_ws_timeout_duplicate(r: RunResult, policy: str) -> None:
    assert perturbations(r, "slow-place-reply")
    dup = checks(r)["duplicate_orders"]
    assert dup.held is True and dup.figures["duplicates"] == 0
    # A late reply makes the connector ask the exchange by customerOrderId; the order is there, so
    # nothing is sent again and nothing fails as a duplicate.
    asked = [x for x in r.records if x["kind"] == "rest" and x.get("dir") == "out"
             and "/customerorderid/" in x["type"]]
    assert asked
    assert dup.figures["failed_duplicate_attempts"] == 0
    assert not any(x["kind"] == "event" and x["type"] == "OrderFailed" for x in r.records)
    if policy == "naive":
        assert_piles_up(r)
    else:
        assert_clean(r)
        assert not any(d["to"] == "FAILED" for d in client_states(r))


def point_account_ws_disconnect(r: RunResult, policy: str) -> None:
    conns = Counter(x["conn"] for x in r.records if x["kind"] == "ws" and x["type"] == "CONNECT")
    assert conns["account-1"] == 1 and conns["account-2"] == 1  # dropped once, reconnected
    assert any(p["msg_type"] == "DISCONNECT" for p in perturbations(r, "account-drop-mid-placement"))
    # the placement cut off by the drop was asked about, not re-sent: no duplicate attempt
    assert fig(r, "duplicate_orders", "failed_duplicate_attempts") == 0
    assert fig(r, "duplicate_orders", "duplicates") == 0
    if policy == "naive":
        assert_piles_up(r)
        return
    assert_clean(r)
    assert checks(r)["cancel_resolves"].held is True
    assert fig(r, "cancel_resolves", "late_or_unresolved") == 0
    assert checks(r)["requote"].held is True
    # The connector did not take the failed re-sends for its orders.
    assert not any(d["to"] == "FAILED" for d in client_states(r))


def point_account_ws_reconnect_snapshot(r: RunResult, policy: str) -> None:
    conns = Counter(x["conn"] for x in r.records if x["kind"] == "ws" and x["type"] == "CONNECT")
    assert conns["account-1"] == 1 and conns["account-2"] == 1  # dropped once, reconnected
    # The reconnect's connect-time snapshot was held behind the first placement reply on it.
    (late,) = perturbations(r, "reconnect-snapshot-late")
    assert late["conn"] == "account-2" and late["msg_type"] == "OPEN_ORDERS_UPDATE"
    on_new = [x for x in r.records if x["kind"] == "ws" and x.get("dir") == "in" and x["conn"] == "account-2"]
    kinds = [x["type"] for x in on_new]
    assert kinds[0] == "AUTHENTICATED" and "BALANCE_UPDATE" in kinds[1:3]
    first_reply = kinds.index("PLACE_LIMIT_WS_RESPONSE")
    held = on_new[first_reply + 1]  # built at the reconnect, before the fresh orders: none listed
    assert held["type"] == "OPEN_ORDERS_UPDATE" and data(held) == {"type": "OPEN_ORDERS_UPDATE", "data": []}
    # No ordinary-race snapshot got through: everything that fooled naive came from the reconnect.
    absent = [x for x in r.records if x["kind"] == "client" and x["type"] == "ORDER_STATE"
              and data(x).get("reason") == "open_orders_update:absent" and data(x).get("from") != "PENDING_CANCEL"]
    if policy == "naive":
        assert fig(r, "false_cancels", "false_cancels") == 2 and fig(r, "orphans", "orphans") == 2
        assert len(absent) == 2 and all(x["t"] == held["t"] for x in absent)
        return
    assert_clean(r)
    assert absent == []


def point_from_log_seed_report(r: RunResult, policy: str) -> None:
    """The seed report's two log lines, as a scenario (from-log): the snapshot omitting the pending
    order is delivered 5 ms before that order's placement reply, on every order."""
    moved = perturbations(r, "snapshot-before-ack")
    assert moved
    account = [x for x in r.records if x["kind"] == "ws" and x.get("dir") == "in" and x["conn"].startswith("account")]
    for reply in (x for x in account if x["type"] == "PLACE_LIMIT_WS_RESPONSE"):
        before = [x for x in account if x["type"] == "OPEN_ORDERS_UPDATE" and x["t"] == reply["t"] - 5_000_000]
        if before:
            break
    else:
        raise AssertionError("no placement reply 5 ms after a snapshot")
    if policy == "naive":
        point_open_orders_race(r, policy)
        # as in open_orders_race: cancelled while pending, then the late reply reopens it
        reopened = [d for d in client_states(r) if d.get("from") == "CANCELED"]
        falsely = [d for d in client_states(r)
                   if d.get("to") == "CANCELED" and d.get("reason") == "open_orders_update:absent"]
        assert falsely and reopened
    else:
        point_open_orders_race(r, policy)


POINTS = {
    "open_orders_race": point_open_orders_race,
    "stale_snapshot": point_stale_snapshot,
    "cancel_ack_not_final": point_cancel_ack_not_final,
    "ws_timeout_duplicate": point_ws_timeout_duplicate,
    "account_ws_disconnect": point_account_ws_disconnect,
    "account_ws_reconnect_snapshot": point_account_ws_reconnect_snapshot,
    "from_log_seed_report": point_from_log_seed_report,
}


@pytest.mark.parametrize(("name", "policy"), CASES, ids=[f"{n}[{p}]" for n, p in CASES])
def test_scenario_verdict(name: str, policy: str) -> None:
    r = result(name, policy)
    assert r.as_expected, (
        f"{name} under {policy}: unexpected {r.unexpected}; "
        + "; ".join(c.message for c in r.checks if c.name in r.unexpected)
    )
    assert r.sim_seconds >= r.scenario.duration_s
    POINTS[name](r, policy)


def test_every_shipped_scenario_declares_its_naive_verdict() -> None:
    """Each race scenario says what the buggy handler breaks (and is covered above)."""
    for stem in POINTS:
        scenario = load_scenario(SCENARIOS / f"{stem}.toml")
        assert scenario.expected_violations.get("naive"), stem
        assert scenario.expected_violations.get("reconcile") is None, stem  # the fix holds everywhere


def test_refused_resurrection_is_not_a_final_state_exit() -> None:
    """A guarded tracker records a refused transition with from == to: the order stayed final."""

    def state(t: int, frm: str | None, to: str, reason: str) -> dict[str, Any]:
        return {"t": t, "conn": "client", "dir": "local", "kind": "client", "type": "ORDER_STATE",
                "data": {"client_order_id": "c1", "from": frm, "to": to, "reason": reason, "where": "cached"}}

    refused = [state(0, None, "PENDING_CREATE", "create"), state(1, "PENDING_CREATE", "CANCELED", "x"),
               state(2, "CANCELED", "CANCELED", "resurrection-refused")]
    fse = {c.name: c for c in run_checks(refused, CheckSpec())}["final_state_exit"]
    assert fse.held is True and fse.figures["exits"] == 0 and fse.figures["refused"] == 1
    resurrected = refused[:2] + [state(2, "CANCELED", "OPEN", "place_ack")]
    fse = {c.name: c for c in run_checks(resurrected, CheckSpec())}["final_state_exit"]
    assert fse.held is False and fse.figures["transitions"] == {"CANCELED->OPEN": 1}
