"""VALR's REST API (the market-making subset). Bodies come from the codec.

One middleware does what every request needs: trace (request and response, secrets scrubbed),
the schedule's HTTP faults and delays, rate limits, signature checks, and VALR-shaped errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiohttp import web

from replay import codec
from replay.exchange.model import ExchangeError

from .auth_check import MSG_BAD_SIGNATURE, AuthOk, check_signature, scrub_headers
from .connection import FAKE

if TYPE_CHECKING:
    from .connection import FakeServer

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# [INF] codes: VALR's own code for each of these is not documented.
INVALID_JSON = (-113, "Invalid JSON payload")  # [C-code CCXT] code and text
INVALID_REQUEST = (-1, "Invalid Request, please check your request and try again")
ORDER_NOT_FOUND = (-1, "Invalid Order. ")  # [C-code CCXT]; note the trailing space
# [INF] VALR's answer to a path (or a method on a path) it does not serve is undocumented:
# 404 in its error shape, the message naming the request so a trace shows what was called.
UNKNOWN_ROUTE = (-1, "No such route")


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


def _fake(request: web.Request) -> "FakeServer":
    return request.app[FAKE]


def _json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body, separators=(",", ":")),
                        content_type="application/json", headers=headers)


def _error_response(status: int, code: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return _json_response(codec.error_json(code, message), status, headers)


def _parsed_body(text: str) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
        return text


# Per-request storage keys (aiohttp >= 3.12 has typed RequestKey; older versions use strings).
_RequestKey = getattr(web, "RequestKey", None)


def _rkey(name: str, kind: Any) -> Any:
    return _RequestKey(name, kind) if _RequestKey is not None else name


CONN = _rkey("valr_conn", str)
RAW_BODY = _rkey("valr_raw_body", bytes)
AUTH = _rkey("valr_auth", AuthOk)
JSON = _rkey("valr_json", object)


# --- middleware -------------------------------------------------------------------------------
SIGNED: set[tuple[str, str]] = set()  # (method, canonical route) that need a signature


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    fake = _fake(request)
    if request.path.startswith("/ws/") and not _unknown_route(request):
        try:
            return await handler(request)
        except web.HTTPException as exc:  # aiohttp's own refusal of an upgrade (400 without Upgrade)
            if exc.status < 400:
                raise
            return _error_response(exc.status, -1, _http_exception_message(exc))
    conn = fake.next_conn_id("rest")
    refused: web.HTTPException | None = None
    try:
        raw = await request.read()
    except web.HTTPException as exc:  # a body over the app's client_max_size: 413
        raw, refused = b"", exc
    text = raw.decode("utf-8", errors="replace")
    route = _route_of(request)  # the route template, for signing rules
    # The schedule's route patterns match a concrete path as well as a template: pass the path.
    path = request.path
    type_ = f"{request.method} {request.path}"
    fake.record(conn, "out", "rest", type_, {
        "method": request.method, "path": request.path, "query": request.query_string,
        "headers": scrub_headers(request.headers), "body": _parsed_body(text),
    })
    request[CONN] = conn
    request[RAW_BODY] = raw
    now = fake.now()
    fault = fake.schedule.http_fault(now, request.method, path)
    if refused is not None:
        response: web.StreamResponse = _error_response(refused.status, -1, _http_exception_message(refused))
    elif fault is not None:
        if fault.status == 0:
            # Never answer: the client gives up (its timeout). Released when the server stops.
            await fake.stopping.wait()
            raise web.HTTPServiceUnavailable()
        response = _json_response(
            fault.body if fault.body is not None else {"code": -1, "message": "Fault injected"},
            fault.status, dict(fault.headers))
    else:
        try:
            response = await _checked(request, _played(handler) if fake.playback is not None else handler,
                                      fake, route)
        except ApiError as exc:
            response = _error_response(exc.status, exc.code, exc.message, exc.headers)
        except web.HTTPException as exc:  # aiohttp's own 404 / 405
            response = _error_response(exc.status, -1, exc.reason or "Not found")
        except Exception:  # a bug in the fake: answer in VALR's shape, keep serving
            log.exception("%s %s failed", request.method, request.path)
            response = _error_response(500, -1, "Internal server error")
    delay = float(fake.schedule.http_delay(now, request.method, path))
    if delay > 0:
        await asyncio.sleep(delay)
    body = response.text if isinstance(response, web.Response) else None
    fake.record(conn, "in", "rest", type_, {
        "status": response.status, "headers": dict(response.headers), "body": _parsed_body(body or ""),
    })
    return response


def _http_exception_message(exc: web.HTTPException) -> str:
    """aiohttp's text for one of its refusals, on one line (``reason: first line of text``)."""
    lines = (exc.text or "").strip().splitlines()
    return f"{exc.reason}: {lines[0]}" if lines else str(exc.reason)


def _lenient_signature(fake: "FakeServer", request: web.Request, route: str) -> None:
    """A GET signed over its path without the query string (``AuthOk.query_unsigned``, the form
    valr-python sends): refused under ``server.strict_signatures``, else accepted and traced as a
    ``LENIENT_SIGNATURE`` meta record, so a connector relying on it shows in the trace."""
    strict = bool(getattr(fake, "strict_signatures", False))
    fake.record("run", "local", "meta", "LENIENT_SIGNATURE", {
        "conn": request[CONN], "method": request.method, "route": route, "path": request.path,
        "accepted": not strict})
    if strict:
        raise ApiError(401, -12, MSG_BAD_SIGNATURE)


def _played(handler: Handler) -> Handler:
    """Playback mode: the capture answers (GETs from the recorded responses, order calls
    matched against the recorded requests); on a divergence or an unrecorded GET, ``handler``
    (the simulated exchange) answers after a handover, else a 500 naming the divergence."""

    async def play(request: web.Request) -> web.StreamResponse:
        from replay.playback import Diverged, Divergence

        fake = _fake(request)
        playback = fake.playback
        if playback is None:  # handed over meanwhile
            return await handler(request)
        now = fake.now()
        method = request.method.upper()
        reply = None
        try:
            if method in ("GET", "HEAD"):
                reply = playback.answer_get(now, method, request.path)
                if reply is None:
                    came = {"type": f"{method} {request.path}", "path": request.path}
                    playback.divergence = Divergence(now, "the capture has no response for this GET", came,
                                                     None, None, playback.matched)
                    raise Diverged(playback.divergence)
            else:
                releases = playback.on_request(now, "rest", {
                    "method": method, "path": request.path, "query": request.query_string,
                    "body": request[JSON]})
                reply = next((r for r in releases if r.target == "rest"), None)
                fake.release(r for r in releases if r.target != "rest")
        except Diverged as exc:
            if fake.diverge(exc.divergence):
                return await handler(request)
            raise ApiError(500, -1, f"replay divergence: {exc.divergence.reason}") from exc
        if reply is None:  # the recording lost this request's response
            raise ApiError(500, -1, "replay: the capture has no response to this request")
        placed = (reply.message or {}).get("body") if isinstance(reply.message, dict) else None
        if method == "POST" and isinstance(placed, dict) and isinstance(placed.get("id"), str):
            if hasattr(fake.schedule, "note_order"):  # REST placements count for bot-order predicates
                fake.schedule.note_order(now, placed["id"])
        wait = reply.at - fake.now()
        if wait > 0:
            await asyncio.sleep(wait)
        data = reply.message if isinstance(reply.message, dict) else {}
        status = int(data.get("status") or 200)
        body = data.get("body")
        if body is None or body == "":
            return web.Response(status=status, body=b"", content_type="application/json")
        text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        return web.Response(status=status, text=text, content_type="application/json")

    return play


def _unknown_route(request: web.Request) -> bool:
    """No route serves this method and path (aiohttp's 404, and its 405 for a path that
    matches a template of another method: /v1/orders/abc is DELETE /v1/orders/{pair})."""
    return request.match_info.http_exception is not None


def _route_of(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    return getattr(resource, "canonical", None) or request.path


async def _checked(request: web.Request, handler: Handler, fake: "FakeServer", route: str) -> web.StreamResponse:
    peer = request.remote or ""
    # Every request counts against its IP first, refused ones included; an API key's quota is
    # charged only once the signature proves the caller holds the key (below), so that requests
    # signed badly with another account's key cannot use up that account's quota.
    limited = fake.ratelimiter.check(fake.now_ms(), method=request.method, path=request.path, ip=peer,
                                     routes=False)
    if limited is None and _unknown_route(request):
        # Before the signature and body checks (and the playback): the route is the problem.
        raise ApiError(404, UNKNOWN_ROUTE[0], f"{UNKNOWN_ROUTE[1]}: {request.method} {request.path}")
    verified_key: str | None = None
    if limited is None and (request.method, route) in SIGNED:
        verdict = check_signature(
            request.headers, request.method, request.path_qs, request[RAW_BODY],
            secrets_by_key=fake.secrets_by_key, now_ms=fake.now_ms(), window_ms=fake.timestamp_window_ms,
            subaccounts=fake.subaccounts,
        )
        if isinstance(verdict, AuthOk) and verdict.query_unsigned:
            _lenient_signature(fake, request, route)
        if not isinstance(verdict, AuthOk):
            raise ApiError(verdict.status, verdict.code, verdict.message)
        request[AUTH] = verdict
        verified_key = verdict.api_key
    if limited is None:
        limited = fake.ratelimiter.check(fake.now_ms(), method=request.method, path=request.path,
                                         api_key=verified_key)
    if limited is not None:
        body = limited.body()
        raise ApiError(429, int(body["code"]), str(body["message"]), limited.headers())
    if request[RAW_BODY]:
        # Content-Type application/json is required on bodies [C-off OFF-PM]; the status for a
        # wrong one is [INF] 400.
        if request.content_type != "application/json":
            raise ApiError(400, INVALID_REQUEST[0], "Content-Type must be application/json")
        try:
            request[JSON] = json.loads(request[RAW_BODY])
        except (ValueError, RecursionError):  # RecursionError: nested deeper than the parser goes
            raise ApiError(400, *INVALID_JSON) from None
    else:
        request[JSON] = None
    try:
        return await handler(request)
    except codec.CodecError as exc:
        raise ApiError(400, int(exc.code), str(exc.message)) from exc
    except ExchangeError as exc:
        raise ApiError(400, int(exc.code), exc.message) from exc


# --- helpers ----------------------------------------------------------------------------------
def _account(request: web.Request) -> str:
    return request[AUTH].account


def _body_object(request: web.Request) -> dict[str, Any]:
    body = request[JSON]
    if not isinstance(body, dict):
        raise ApiError(400, INVALID_REQUEST[0], "request body must be a JSON object")
    return body


def _pair(request: web.Request, pair: str) -> str:
    symbol = pair.upper()
    if symbol not in _fake(request).exchange.pairs:
        # [INF] VALR's exact code/text for an unknown pair in a path is undocumented.
        raise ApiError(400, -1, f"Invalid currency pair: {pair}")
    return symbol


def _int_query(request: web.Request, name: str, default: int, lo: int = 0, hi: int = 10_000) -> int:
    value = request.query.get(name)
    if value is None or value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise ApiError(400, INVALID_REQUEST[0], f"query parameter {name} must be an integer") from None
    if not lo <= n <= hi:
        raise ApiError(400, INVALID_REQUEST[0], f"query parameter {name} must be between {lo} and {hi}")
    return n


def _find(request: web.Request, pair: str | None = None, order_id: str | None = None,
          customer_order_id: str | None = None) -> Any:
    fake = _fake(request)
    order = fake.exchange.find_order(_account(request), pair=pair, order_id=order_id,
                                     customer_order_id=customer_order_id)
    if order is None:
        # [INF] unknown order: HTTP 400 {"code":-1,"message":"Invalid Order. "} (CCXT's code -1).
        # Hummingbot matches 404 + "Order does not exist"; it also treats any status-request
        # error as "not found", so the CCXT-documented body is kept.
        raise ApiError(400, *ORDER_NOT_FOUND)
    return order


# --- public -----------------------------------------------------------------------------------
async def get_time(request: web.Request) -> web.Response:
    return _json_response(codec.time_json(_fake(request).now_ms()))


async def get_status(request: web.Request) -> web.Response:
    return _json_response(codec.status_json())


async def get_pairs(request: web.Request) -> web.Response:
    fake = _fake(request)
    kind = request.match_info.get("type")
    specs = list(fake.exchange.pairs.values())
    body = [codec.pair_json(spec) for spec in specs]
    if kind is not None:
        body = [p for p in body if str(p.get("currencyPairType", "SPOT")).upper() == kind.upper()]
    return _json_response(body)


async def get_orderbook(request: web.Request) -> web.Response:
    fake = _fake(request)
    pair = _pair(request, request.match_info["pair"])
    return _json_response(codec.orderbook_json(fake.exchange.book(pair, fake.book_depth), fake.book_depth))


async def get_currencies(request: web.Request) -> web.Response:
    """Every currency of the exchange config: the pairs' bases and quotes, then any other
    currency an account holds, in order of first appearance."""
    fake = _fake(request)
    places: dict[str, int | None] = {}
    for spec in fake.exchange.pairs.values():
        places.setdefault(spec.base, spec.base_decimals)
        places.setdefault(spec.quote, None)
    for acct in fake.config.accounts:
        for currency in acct.balances:
            places.setdefault(currency, None)
    return _json_response([codec.public_currency_json(code, dp) for code, dp in places.items()])


async def get_public_trades(request: web.Request) -> web.Response:
    fake = _fake(request)
    pair = _pair(request, request.match_info["pair"])
    # [INF] VALR: default and maximum 100 per page, newest first, skip for paging.
    limit = _int_query(request, "limit", 100, 1, 100)
    skip = _int_query(request, "skip", 0)
    trades = fake.exchange.recent_trades(pair, skip + limit)[skip:]
    return _json_response([codec.public_trade_json(t) for t in trades])


async def get_market_summaries(request: web.Request) -> web.Response:
    fake = _fake(request)
    return _json_response([codec.market_summary_json(fake.exchange.market_summary(p)) for p in fake.exchange.pairs])



async def get_market_summary(request: web.Request) -> web.Response:
    fake = _fake(request)
    pair = _pair(request, request.match_info["pair"])
    return _json_response(codec.market_summary_json(fake.exchange.market_summary(pair)))


# --- account ----------------------------------------------------------------------------------
async def get_balances(request: web.Request) -> web.Response:
    fake = _fake(request)
    exclude = request.query.get("excludeZeroBalances", "false").lower() == "true"
    balances = fake.exchange.balances(_account(request))
    if isinstance(balances, dict):
        balances = list(balances.values())
    if exclude:
        balances = [b for b in balances if b.total != 0]
    return _json_response([codec.balance_json(b, valuation=fake.valuation) for b in balances])


async def get_trade_history(request: web.Request) -> web.Response:
    """GET /v1/account/{pair}/tradehistory and, without a pair, /v1/account/tradehistory (every
    pair; added by VALR on 6 January 2025 [C-off changelog]): the account's fills, newest first."""
    fake = _fake(request)
    raw_pair = request.match_info.get("pair")
    pair = _pair(request, raw_pair) if raw_pair is not None else None
    limit = _int_query(request, "limit", 100, 1, 100)
    skip = _int_query(request, "skip", 0)
    # The exchange keeps no per-account fill list; the server keeps the AccountTrade events it routed.
    fills = [e for e in reversed(fake.account_trades.get(_account(request), []))
             if pair is None or e.trade.pair == pair]
    return _json_response([codec.account_trade_json(e) for e in fills[skip:skip + limit]])


async def get_trade_fees(request: web.Request) -> web.Response:
    """GET /v1/account/fees/trade: every pair's maker and taker fee [C-off Postman "Trade Fees"]."""
    return _json_response([codec.fee_json(spec) for spec in _fake(request).exchange.pairs.values()])


async def get_transaction_history(request: web.Request) -> web.Response:
    """The account's transaction history, newest first. Only fills are modelled (no deposits,
    withdrawals or transfers): one record per fill, as NEW_ACCOUNT_HISTORY_RECORD carries it.
    ``transactionTypes`` (comma-separated, e.g. LIMIT_BUY,MARKET_SELL) filters; other VALR
    filters (currency, startTime, endTime, beforeId) are not supported and are ignored [INF]."""
    fake = _fake(request)
    # [INF] VALR's page size: default 100, at most 200.
    limit = _int_query(request, "limit", 100, 1, 200)
    skip = _int_query(request, "skip", 0)
    wanted = {t.strip().upper() for t in request.query.get("transactionTypes", "").split(",") if t.strip()}
    pairs = fake.exchange.pairs
    records = [codec.account_history_rest_json(e, pairs.get(e.trade.pair))
               for e in reversed(fake.account_trades.get(_account(request), []))]
    if wanted:
        records = [r for r in records if r["transactionType"]["type"] in wanted]
    return _json_response(records[skip:skip + limit])


async def get_marketdata_orderbook(request: web.Request) -> web.Response:
    return await get_orderbook(request)


# --- orders -----------------------------------------------------------------------------------
async def post_limit_v1(request: web.Request) -> web.Response:
    sub = _fake(request).submit("PLACE_LIMIT", _account(request), codec.parse_limit(_body_object(request)),
                                request[CONN])
    return _json_response(codec.placed_json(sub.placed_order_id, sub.customer_order_id), 202)


async def post_stop_limit_v1(request: web.Request) -> web.Response:
    """POST /v1/orders/stop/limit: 202 ``{"id", "customerOrderId"}`` [C-off Postman "Stop Limit
    Order V1": captured response]; the order is then "Active" until its stop is reached."""
    sub = _fake(request).submit("PLACE_STOP_LIMIT", _account(request),
                                codec.parse_stop_limit(_body_object(request)), request[CONN])
    return _json_response(codec.placed_json(sub.placed_order_id, sub.customer_order_id), 202)


async def post_stop_limit_v2(request: web.Request) -> web.Response:
    """POST /v2/orders/stop/limit: 201 ``{"id"}`` [C-off Postman "Stop Limit Order V2"]. A request
    refused at once answers 400 in VALR's error shape [INF: VALR's example of a failure that
    happened during placement carries an orderId too; the simulator decides those later]."""
    sub = _fake(request).submit("PLACE_STOP_LIMIT", _account(request),
                                codec.parse_stop_limit(_body_object(request)), request[CONN])
    return _json_response(codec.id_json(sub.placed_order_id), 201)


async def put_modify_v1(request: web.Request) -> web.Response:
    """PUT /v1/orders/modify: 202 ``{"id": <modifyRequestId>}`` [C-off Postman "Modify Order V1"];
    the outcome follows on the account stream (MODIFY_ORDER_OUTCOME)."""
    sub = _fake(request).submit("MODIFY_ORDER", _account(request), codec.parse_modify(_body_object(request)),
                                request[CONN])
    return _json_response(codec.id_json(sub.request_id), 202)


async def put_modify_v2(request: web.Request) -> web.Response:
    """PUT /v2/orders/modify: 201 ``{"id"}`` [C-off Postman "Modify Order V2"]. VALR answers v2
    once the modification is processed; the simulator answers at once, as v1 does [INF]."""
    sub = _fake(request).submit("MODIFY_ORDER", _account(request), codec.parse_modify(_body_object(request)),
                                request[CONN])
    return _json_response(codec.id_json(sub.request_id), 201)


async def post_limit_v2(request: web.Request) -> web.Response:
    try:
        req = codec.parse_limit(_body_object(request))
        sub = _fake(request).submit("PLACE_LIMIT", _account(request), req, request[CONN])
    except (codec.CodecError, ExchangeError) as exc:
        # [C-doc3] v2 answers 201 even on a synchronous failure, with orderId + code + message.
        return _json_response(codec.v2_failure_json(exc.code, exc.message), 201)
    return _json_response(codec.id_json(sub.order_id), 201)


async def post_market(request: web.Request) -> web.Response:
    """POST /v1/orders/market: 202 ``{"id", "customerOrderId"}`` [C-off Postman "Market Order V1":
    captured responses], as the limit order's."""
    sub = _fake(request).submit("PLACE_MARKET", _account(request), codec.parse_market(_body_object(request)),
                                request[CONN])
    return _json_response(codec.placed_json(sub.placed_order_id, sub.customer_order_id), 202)


async def delete_order_v1(request: web.Request) -> web.Response:
    _fake(request).submit("CANCEL_ORDER", _account(request), codec.parse_cancel(_body_object(request)),
                          request[CONN])
    # [C-doc3] empty body; the outcome follows on the WS. Content-Type stays JSON so a client's
    # response.json() yields None (Hummingbot reads a None result as "accepted").
    return web.Response(status=202, body=b"", content_type="application/json")


async def delete_order_v2(request: web.Request) -> web.Response:
    sub = _fake(request).submit("CANCEL_ORDER", _account(request), codec.parse_cancel(_body_object(request)),
                                request[CONN])
    return _json_response(codec.id_json(sub.order_id), 200)


async def delete_pair_orders(request: web.Request) -> web.Response:
    fake = _fake(request)
    pair = request.match_info.get("pair")
    if pair is not None:
        pair = _pair(request, pair)
    ids, events = fake.exchange.cancel_all(fake.now_ms(), _account(request), pair)
    fake.route(events)
    return _json_response(codec.cancelled_ids_json(ids), 200)


async def get_open_orders(request: web.Request) -> web.Response:
    orders = _fake(request).exchange.open_orders(_account(request))
    return _json_response([codec.open_order_json(o) for o in orders])


async def get_order_by_id(request: web.Request) -> web.Response:
    pair = _pair(request, request.match_info["pair"])
    return _json_response(codec.order_status_json(_find(request, pair, order_id=request.match_info["id"])))


async def get_order_by_cid(request: web.Request) -> web.Response:
    pair = _pair(request, request.match_info["pair"])
    return _json_response(codec.order_status_json(_find(request, pair, customer_order_id=request.match_info["cid"])))


async def get_history(request: web.Request) -> web.Response:
    skip = _int_query(request, "skip", 0)
    limit = _int_query(request, "limit", 10, 1, 100)
    orders = _fake(request).exchange.order_history(_account(request), skip, limit)
    pairs = _fake(request).exchange.pairs
    return _json_response([codec.history_json(o, pairs.get(o.pair)) for o in orders])


async def get_history_summary_id(request: web.Request) -> web.Response:
    order = _find(request, order_id=request.match_info["id"])
    return _json_response(codec.history_json(order, _fake(request).exchange.pairs.get(order.pair)))


async def get_history_summary_cid(request: web.Request) -> web.Response:
    order = _find(request, customer_order_id=request.match_info["cid"])
    return _json_response(codec.history_json(order, _fake(request).exchange.pairs.get(order.pair)))


async def get_history_detail_id(request: web.Request) -> web.Response:
    return _json_response(codec.history_detail_json(_find(request, order_id=request.match_info["id"])))


async def get_history_detail_cid(request: web.Request) -> web.Response:
    return _json_response(codec.history_detail_json(_find(request, customer_order_id=request.match_info["cid"])))


async def post_batch(request: web.Request) -> web.Response:
    """POST /v1/batch/orders: 200 ``{"outcomes": [...], "batchId"}`` [C-off Postman "Batch Orders":
    captured response]; request types PLACE_LIMIT, PLACE_MARKET, PLACE_STOP_LIMIT, MODIFY_ORDER,
    CANCEL_ORDER, at most 20."""
    from .ws_account import run_batch

    fake = _fake(request)
    body = _body_object(request)
    outcomes = run_batch(fake, _account(request), body.get("requests"), request[CONN])
    return _json_response(codec.batch_response(outcomes, fake.next_batch_id()), 200)


def add_routes(app: web.Application) -> None:
    def add(method: str, path: str, handler: Handler, signed: bool) -> None:
        app.router.add_route(method, path, handler)
        if signed:
            SIGNED.add((method, path))

    add("GET", "/v1/public/time", get_time, False)
    add("GET", "/v1/public/status", get_status, False)
    add("GET", "/v1/public/pairs", get_pairs, False)
    add("GET", "/v1/public/pairs/{type}", get_pairs, False)
    add("GET", "/v1/public/marketsummary", get_market_summaries, False)
    add("GET", "/v1/public/currencies", get_currencies, False)
    add("GET", "/v1/public/{pair}/orderbook", get_orderbook, False)
    add("GET", "/v1/public/{pair}/marketsummary", get_market_summary, False)
    add("GET", "/v1/public/{pair}/trades", get_public_trades, False)
    add("GET", "/v1/account/balances", get_balances, True)
    add("GET", "/v1/account/transactionhistory", get_transaction_history, True)
    add("GET", "/v1/account/tradehistory", get_trade_history, True)
    add("GET", "/v1/account/fees/trade", get_trade_fees, True)
    add("GET", "/v1/account/{pair}/tradehistory", get_trade_history, True)
    add("GET", "/v1/marketdata/{pair}/orderbook", get_marketdata_orderbook, True)
    add("POST", "/v1/orders/limit", post_limit_v1, True)
    add("POST", "/v2/orders/limit", post_limit_v2, True)
    add("POST", "/v1/orders/market", post_market, True)
    add("POST", "/v1/orders/stop/limit", post_stop_limit_v1, True)
    add("POST", "/v2/orders/stop/limit", post_stop_limit_v2, True)
    add("PUT", "/v1/orders/modify", put_modify_v1, True)
    add("PUT", "/v2/orders/modify", put_modify_v2, True)
    add("DELETE", "/v1/orders/order", delete_order_v1, True)
    add("DELETE", "/v2/orders/order", delete_order_v2, True)
    add("DELETE", "/v1/orders", delete_pair_orders, True)
    add("DELETE", "/v1/orders/{pair}", delete_pair_orders, True)
    add("GET", "/v1/orders/open", get_open_orders, True)
    add("GET", "/v1/orders/history", get_history, True)
    add("GET", "/v1/orders/history/summary/orderid/{id}", get_history_summary_id, True)
    add("GET", "/v1/orders/history/summary/customerorderid/{cid}", get_history_summary_cid, True)
    add("GET", "/v1/orders/history/detail/orderid/{id}", get_history_detail_id, True)
    add("GET", "/v1/orders/history/detail/customerorderid/{cid}", get_history_detail_cid, True)
    add("GET", "/v1/orders/{pair}/orderid/{id}", get_order_by_id, True)
    add("GET", "/v1/orders/{pair}/customerorderid/{cid}", get_order_by_cid, True)
    add("POST", "/v1/batch/orders", post_batch, True)
