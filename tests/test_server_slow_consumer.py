"""One client that never reads must not hold up anyone else: each WebSocket connection has its own
bounded outbound queue and writer; a client whose queue overflows is disconnected (1008, a
SLOW_CONSUMER trace record) and the others' deliveries go on on time."""

from __future__ import annotations

import asyncio
import json
import time

from websockets.asyncio.client import connect

from replay.auth import auth_headers

from conftest import MAKER_KEY, MAKER_SECRET, Records, make_config, recv

# deep books: every SUBSCRIBE brings two 40-level books
MARKET = {"BTCZAR": {"mid": "1500000", "step_interval_s": 0.05, "levels": 40},
          "ETHZAR": {"mid": "60000", "step_interval_s": 0.05, "levels": 40}}
SUBSCRIBE = json.dumps({"type": "SUBSCRIBE", "subscriptions": [
    {"event": "AGGREGATED_ORDERBOOK_UPDATE", "pairs": ["BTCZAR", "ETHZAR"]},
    {"event": "MARKET_SUMMARY_UPDATE", "pairs": ["BTCZAR", "ETHZAR"]}]})


def _never_drains(conn) -> None:
    """Make the server's writes to ``conn`` block for good, as writes to a peer that stopped reading
    do once the socket buffers between them are full (how soon that is depends on the kernel's
    buffer sizes, so the test does not wait for it)."""
    async def send_str(data: str, compress: object = None) -> None:
        await asyncio.get_running_loop().create_future()  # never done

    conn.ws.send_str = send_str


async def _pong_within(ws, n: int, limit_s: float) -> float:
    t0 = time.monotonic()
    await ws.send(json.dumps({"type": "PING", "clientMsgId": f"p{n}"}))
    await recv(ws, lambda m: m.get("type") == "PONG" and m.get("clientMsgId") == f"p{n}", timeout=limit_s)
    return time.monotonic() - t0


async def test_a_client_that_never_reads_is_cut_off_and_nobody_else_waits(make_server, client_factory):
    from replay.capture import TraceRecorder
    from replay.clock import Clock

    clock = Clock()
    trace = TraceRecorder(clock)
    records = Records(trace)
    server = await make_server(make_config(server={"ws_send_queue_bytes": 256 * 1024}, market=MARKET),
                               clock=clock, trace=trace)
    maker = client_factory(server)
    bystander = await maker.ws("/ws/account")
    await recv(bystander, "OPEN_ORDERS_UPDATE")
    slow = await connect(server.ws_trade_url, open_timeout=5)
    slow_id = next(c for c in server.conns if c.startswith("trade-"))
    _never_drains(server.conns[slow_id])

    async def stuff() -> None:  # SUBSCRIBEs until the server gives up on it
        while True:
            await slow.send(SUBSCRIBE)
            await asyncio.sleep(0)

    stuffer = asyncio.ensure_future(stuff())
    try:
        cut = asyncio.ensure_future(records.wait(lambda r: r["type"] == "SLOW_CONSUMER", timeout=20))
        rtts = []
        n = 0
        while not cut.done():  # the bystander's PINGs all answered promptly meanwhile
            n += 1
            rtts.append(await _pong_within(bystander, n, 1.0))
        slow_record = await cut
    finally:
        stuffer.cancel()
        await asyncio.gather(stuffer, return_exceptions=True)
    assert slow_record["data"]["conn"] == slow_id and slow_record["data"]["code"] == 1008
    assert rtts and max(rtts) < 1.0
    # a newcomer is answered at once too
    newcomer = await connect(server.ws_trade_url, open_timeout=5,
                             additional_headers=auth_headers(MAKER_KEY, MAKER_SECRET, "GET", "/ws/trade",
                                                             timestamp_ms=server.now_ms()))
    try:
        await recv(newcomer, "AUTHENTICATED")
        assert await _pong_within(newcomer, 0, 1.0) < 1.0
        await _pong_within(bystander, n + 1, 1.0)
    finally:
        await newcomer.close()
    # the slow client is disconnected by the server with 1008, and nothing of it is left
    gone = await records.wait(lambda r: r["type"] == "DISCONNECT" and r["conn"] == slow_id, timeout=15)
    assert gone["data"]["by"] == "server" and gone["data"]["code"] == 1008
    assert slow_id not in server.conns and slow_id not in server._outboxes
    await slow.close()

