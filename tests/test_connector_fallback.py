"""The reference connector's REST-fallback id is provisional (found by account_ws_disconnect).

When a WebSocket placement gets no reply, the connector re-sends the order over REST with the
same customerOrderId and takes the 202's order id. If the WebSocket attempt did reach the
exchange, that re-send is the duplicate VALR fails, and the live order has the other id. Pure
tests: messages are handed to ``handle_account_message`` directly; no sockets.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from replay.connector.tracker import InFlightOrder, OrderState, OrderUpdate
from replay.connector.valr import ValrConnector

CID = "HB-VR-B1"


async def tracked(provisional: bool) -> tuple[ValrConnector, InFlightOrder, list[str]]:
    c = ValrConnector(api_key="k", api_secret="s")
    order = InFlightOrder(CID, "BTCZAR", "buy", Decimal("1500000"), Decimal("0.001"), 0)
    c.tracker.start_tracking(order)
    c.tracker.apply_order_update(OrderUpdate("BTCZAR", 0.0, OrderState.OPEN, CID, "rest-id", reason="place_ack"))
    if provisional:
        c._provisional_ids[CID] = "rest-id"
    verified: list[str] = []

    async def fake_verify(cid: str) -> None:  # stands in for the REST GET by customerOrderId
        verified.append(cid)
        c._verifying.discard(cid)

    c._verify_order = fake_verify  # type: ignore[method-assign]
    return c, order, verified


def status(order_id: str, state: str) -> dict:
    return {"type": "ORDER_STATUS_UPDATE",
            "data": {"orderId": order_id, "customerOrderId": CID, "orderStatusType": state, "currencyPair": "BTCZAR"}}


async def settle(c: ValrConnector) -> None:
    await c.tracker.wait_idle()
    tasks = [t for t in c._tasks if not t.done()]
    if tasks:
        await asyncio.wait_for(asyncio.gather(*tasks), 5)


async def test_live_news_under_the_other_id_corrects_a_provisional_id():
    c, order, _ = await tracked(provisional=True)
    c.handle_account_message(status("ws-id", "Cancelled"))
    await settle(c)
    assert order.exchange_order_id == "ws-id"
    assert order.state is OrderState.CANCELED
    assert CID not in c._provisional_ids
    await c.stop()


async def test_a_failure_of_the_provisional_id_is_verified_not_applied():
    c, order, verified = await tracked(provisional=True)
    c.handle_account_message(status("rest-id", "Failed"))
    c.handle_account_message({"type": "FAILED_ORDER", "data": {"orderId": "rest-id", "message": "Duplicate"}})
    c.handle_account_message({"type": "ORDER_PROCESSED", "data": {"orderId": "rest-id", "success": False}})
    await settle(c)
    assert order.state is OrderState.OPEN and CID in c.tracker.active
    assert verified and set(verified) == {CID}
    await c.stop()


async def test_without_a_fallback_the_other_id_stays_a_stranger():
    c, order, verified = await tracked(provisional=False)
    c.handle_account_message(status("ws-id", "Cancelled"))  # a duplicate's news: not ours
    await settle(c)
    assert order.exchange_order_id == "rest-id" and order.state is OrderState.OPEN
    c.handle_account_message(status("rest-id", "Failed"))  # our own order failed: applied
    await settle(c)
    assert order.state is OrderState.FAILED and not verified
    await c.stop()
