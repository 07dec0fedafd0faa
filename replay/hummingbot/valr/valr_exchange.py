"""VALR spot exchange connector on Hummingbot's ExchangePyBase.

Orders are placed and cancelled over the account WebSocket (PLACE_LIMIT_ORDER /
CANCEL_LIMIT_ORDER, replies routed by ``clientMsgId`` through the user-stream data source) with
a REST fallback when no reply comes within ``CONSTANTS.WS_ORDER_TIMEOUT``. Orders are tracked
from the account stream (ORDER_STATUS_UPDATE, ORDER_PROCESSED, FAILED_ORDER,
FAILED_CANCEL_ORDER, NEW_ACCOUNT_TRADE, BALANCE_UPDATE, OPEN_ORDERS_UPDATE) and by status
polling (``GET /v1/orders/{pair}/customerorderid/{cid}``).

What OPEN_ORDERS_UPDATE (VALR's full list of open orders) does to tracked orders is set by
``open_orders_policy``:

``naive``
    every tracked, active, not-done order missing from the list (by exchange id or
    customerOrderId) is marked CANCELED at once, PENDING_CREATE included (the bug: a snapshot
    built before a just-placed order reached the book cancels it locally, PMM forgets it and
    nothing ever cancels it on the exchange);
``age-guard:S``
    the same, skipping orders younger than S seconds (``creation_timestamp``);
``ignore``
    nothing;
``reconcile``
    a snapshot never ends an order by itself. Only acknowledged orders count (exchange id
    known, OPEN confirmed); a snapshot is evidence of absence only if received after that
    confirmation and, when both are known, its newest createdAt/updatedAt is not older than the
    order's creation at the exchange; after 2 consecutive such snapshots spanning >= 1 s the
    order's status is queried by REST and the answer applied ("not found" goes to Hummingbot's
    ``process_order_not_found``, the lost-order path). A snapshot listing an order still
    PENDING_CREATE moves it to OPEN. Under reconcile the connector refuses to move an order
    out of a final state (CANCELED/FILLED/FAILED) back to a live one.

Every OrderUpdate the connector emits carries ``misc_updates={"reason": ...}``; the latest
reason per client order id is also kept in ``last_update_reason``.
"""

import asyncio
import math
from decimal import Decimal
from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

from bidict import bidict
from hummingbot.connector.constants import s_decimal_NaN
from hummingbot.connector.exchange_py_base import ExchangePyBase
from hummingbot.connector.trading_rule import TradingRule
from hummingbot.connector.utils import combine_to_hb_trading_pair
from hummingbot.core.data_type.common import OrderType, TradeType
from hummingbot.core.data_type.in_flight_order import InFlightOrder, OrderState, OrderUpdate, TradeUpdate
from hummingbot.core.data_type.order_book_tracker_data_source import OrderBookTrackerDataSource
from hummingbot.core.data_type.trade_fee import TokenAmount, TradeFeeBase, TradeFeeSchema
from hummingbot.core.data_type.user_stream_tracker_data_source import UserStreamTrackerDataSource
from hummingbot.core.utils.async_utils import safe_ensure_future
from hummingbot.core.web_assistant.web_assistants_factory import WebAssistantsFactory

from . import valr_constants as CONSTANTS
from . import valr_utils
from . import valr_web_utils as web_utils
from .valr_api_order_book_data_source import ValrAPIOrderBookDataSource
from .valr_api_user_stream_data_source import ValrAPIUserStreamDataSource
from .valr_auth import ValrAuth
from .valr_utils import decimal_or, error_text, parse_valr_time

FINAL_STATES = (OrderState.CANCELED, OrderState.FILLED, OrderState.FAILED)
LIVE_STATES = (OrderState.OPEN, OrderState.PARTIALLY_FILLED, OrderState.PENDING_CANCEL)


class ValrOrderNotFound(IOError):
    """The exchange does not know the order (VALR: ``{"code":-1,"message":"Invalid Order. "}``)."""


class _WsNotSent(ConnectionError):
    """The account WebSocket was not there: the command never left."""


class _PlacementSettled(Exception):
    """The placement's outcome already reached the tracker another way: emit nothing more."""


class ValrExchange(ExchangePyBase):
    UPDATE_ORDER_STATUS_MIN_INTERVAL = 10.0

    web_utils = web_utils
    _trade_fee_schema: Optional[TradeFeeSchema]  # set by ExchangeBase; declared for the type checker

    def __init__(self,
                 valr_api_key: str,
                 valr_api_secret: str,
                 trading_pairs: Optional[List[str]] = None,
                 trading_required: bool = True,
                 open_orders_policy: str = "naive",
                 balance_asset_limit: Optional[Dict[str, Dict[str, Decimal]]] = None,
                 rate_limits_share_pct: Decimal = Decimal("100")):
        self.api_key = valr_api_key
        self.secret_key = valr_api_secret
        self._trading_pairs = list(trading_pairs or [])
        self._trading_required = trading_required
        self._domain = CONSTANTS.DEFAULT_DOMAIN
        self._policy, self._age_guard_s = valr_utils.parse_open_orders_policy(open_orders_policy)
        self.open_orders_policy = (self._policy if self._age_guard_s is None
                                   else f"age-guard:{self._age_guard_s:g}")

        # client order id -> ...
        self.last_update_reason: Dict[str, str] = {}
        self._provisional_ids: Dict[str, str] = {}  # REST-fallback ids while the WS attempt may have got through
        self._stream_ids: Dict[str, str] = {}  # exchange ids the stream named for orders still being placed
        self._placement_results: Dict[str, Tuple[OrderState, str]] = {}
        self._open_confirmed_at: Dict[str, float] = {}  # when OPEN was emitted (reconcile evidence)
        self._exchange_created_at: Dict[str, float] = {}
        self._final_emitted: Set[str] = set()
        self._absent: Dict[str, Tuple[int, float]] = {}  # reconcile: (consecutive absences, first at)
        self._verifying: Set[str] = set()
        self._background_tasks: Set[asyncio.Future] = set()
        self._trade_history_cache: Dict[str, Tuple[float, List[Dict[str, Any]]]] = {}
        # counters, for tests and reports
        self.ws_placements = 0
        self.rest_placements = 0
        self.ws_cancels = 0
        self.rest_cancels = 0

        super().__init__(balance_asset_limit, rate_limits_share_pct)

    # === identity and configuration ===

    @property
    def name(self) -> str:
        return CONSTANTS.EXCHANGE_NAME

    @property
    def authenticator(self) -> ValrAuth:
        return ValrAuth(api_key=self.api_key, secret_key=self.secret_key)

    @property
    def rate_limits_rules(self):
        return CONSTANTS.RATE_LIMITS

    @property
    def domain(self) -> str:
        return self._domain

    @property
    def client_order_id_max_length(self) -> int:
        return CONSTANTS.MAX_ORDER_ID_LEN

    @property
    def client_order_id_prefix(self) -> str:
        return CONSTANTS.HBOT_ORDER_ID_PREFIX

    @property
    def trading_rules_request_path(self) -> str:
        return CONSTANTS.PAIRS_PATH_URL

    @property
    def trading_pairs_request_path(self) -> str:
        return CONSTANTS.PAIRS_PATH_URL

    @property
    def check_network_request_path(self) -> str:
        return CONSTANTS.STATUS_PATH_URL

    @property
    def trading_pairs(self) -> List[str]:
        return self._trading_pairs

    @property
    def is_cancel_request_in_exchange_synchronous(self) -> bool:
        return False

    @property
    def is_trading_required(self) -> bool:
        return self._trading_required

    def supported_order_types(self) -> List[OrderType]:
        return [OrderType.LIMIT, OrderType.LIMIT_MAKER]

    def estimate_fee_pct(self, is_maker: bool) -> Decimal:
        schema = self.trade_fee_schema()
        return schema.maker_percent_fee_decimal if is_maker else schema.taker_percent_fee_decimal

    def trade_fee_schema(self) -> TradeFeeSchema:
        # Not through Hummingbot's client configuration (headless use): VALR's flat default.
        if self._trade_fee_schema is None:
            self._trade_fee_schema = valr_utils.DEFAULT_FEES
        return self._trade_fee_schema

    @property
    def _user_stream_data_source(self) -> ValrAPIUserStreamDataSource:
        return self._user_stream_tracker.data_source

    # === error classification ===

    def _is_request_exception_related_to_time_synchronizer(self, request_exception: Exception) -> bool:
        return valr_utils.is_timestamp_error(str(request_exception))

    def _is_order_not_found_during_status_update_error(self, status_update_exception: Exception) -> bool:
        return (isinstance(status_update_exception, ValrOrderNotFound)
                or valr_utils.is_order_not_found(str(status_update_exception)))

    def _is_order_not_found_during_cancelation_error(self, cancelation_exception: Exception) -> bool:
        return (isinstance(cancelation_exception, ValrOrderNotFound)
                or valr_utils.is_order_not_found(str(cancelation_exception)))

    # === factories ===

    def _create_web_assistants_factory(self) -> WebAssistantsFactory:
        return web_utils.build_api_factory(
            throttler=self._throttler,
            time_synchronizer=self._time_synchronizer,
            domain=self._domain,
            auth=self._auth)

    def _create_order_book_data_source(self) -> OrderBookTrackerDataSource:
        return ValrAPIOrderBookDataSource(
            trading_pairs=self._trading_pairs,
            connector=self,
            api_factory=self._web_assistants_factory,
            domain=self.domain)

    def _create_user_stream_data_source(self) -> UserStreamTrackerDataSource:
        return ValrAPIUserStreamDataSource(
            auth=self._auth,
            trading_pairs=self._trading_pairs,
            connector=self,
            api_factory=self._web_assistants_factory,
            domain=self.domain)

    # === time and tasks ===

    def _now(self) -> float:
        return self._time()

    def _spawn(self, coro) -> asyncio.Future:
        task = safe_ensure_future(coro)
        self._background_tasks.add(task)
        task.add_done_callback(self._background_tasks.discard)
        return task

    async def _status_polling_loop_fetch_updates(self):
        await super()._status_polling_loop_fetch_updates()
        self._prune_order_state()

    def _prune_order_state(self):
        """Forget per-order bookkeeping of orders the tracker no longer keeps (active, cached or lost)."""
        keep = set(self._order_tracker.all_fillable_orders)
        for table in (self._provisional_ids, self._stream_ids, self._placement_results, self._open_confirmed_at,
                      self._exchange_created_at, self._absent, self.last_update_reason):
            for cid in [c for c in table if c not in keep]:
                del table[cid]
        self._final_emitted &= keep

    async def stop_network(self):
        await super().stop_network()
        tasks = [t for t in self._background_tasks if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._background_tasks.clear()

    # === fees ===

    def _get_fee(self,
                 base_currency: str,
                 quote_currency: str,
                 order_type: OrderType,
                 order_side: TradeType,
                 amount: Decimal,
                 price: Decimal = s_decimal_NaN,
                 is_maker: Optional[bool] = None) -> TradeFeeBase:
        is_maker = is_maker or order_type is OrderType.LIMIT_MAKER
        schema = self.trade_fee_schema()
        percent = schema.maker_percent_fee_decimal if is_maker else schema.taker_percent_fee_decimal
        return TradeFeeBase.new_spot_fee(fee_schema=schema, trade_type=order_side, percent=percent)

    async def _update_trading_fees(self):
        # VALR has per-pair fee routes only for some account tiers; the flat default is used.
        pass

    # === emitting order updates ===

    def _emit(self, update: OrderUpdate, reason: str):
        """Hand one OrderUpdate to the tracker (``process_order_update``: applied one loop hop later)."""
        cid = update.client_order_id
        misc = dict(update.misc_updates or {})
        misc["reason"] = reason
        update = update._replace(misc_updates=misc)
        if cid is not None:
            if self._policy == "reconcile" and update.new_state not in FINAL_STATES:
                order = self._order_tracker.fetch_order(cid) or self._order_tracker.lost_orders.get(cid)
                if cid in self._final_emitted or (order is not None and order.current_state in FINAL_STATES):
                    self.logger().info(f"Order {cid}: {update.new_state.name} ({reason}) refused after a final state.")
                    return
            if update.new_state is OrderState.PENDING_CANCEL and reason == "cancel_ack":
                # Our own cancel being acknowledged says nothing new about an order that is finished.
                order = self._order_tracker.fetch_order(cid)
                if cid in self._final_emitted or (order is not None and order.current_state in FINAL_STATES):
                    return
            if update.new_state in FINAL_STATES:
                self._final_emitted.add(cid)
            elif update.new_state in (OrderState.OPEN, OrderState.PARTIALLY_FILLED):
                self._open_confirmed_at.setdefault(cid, self._now())
            self.last_update_reason[cid] = reason
        self._order_tracker.process_order_update(update)

    def _update_order_after_failure(self, order_id: str, trading_pair: str, exception: Optional[Exception] = None,
                                    reason: Optional[str] = None):
        misc_updates = {}
        if exception:
            misc_updates["error_message"] = str(exception)
            misc_updates["error_type"] = exception.__class__.__name__
        if reason is None:
            reason = "validation" if isinstance(exception, ValueError) else f"failure: {exception}"[:200]
        self._emit(OrderUpdate(
            client_order_id=order_id,
            trading_pair=trading_pair,
            update_timestamp=self._update_timestamp(),
            new_state=OrderState.FAILED,
            misc_updates=misc_updates), reason)

    def _on_order_failure(self, order_id: str, trading_pair: str, amount: Decimal, trade_type: TradeType,
                          order_type: OrderType, price: Optional[Decimal], exception: Exception, **kwargs):
        self.logger().warning(
            f"Error submitting {trade_type.name.lower()} {order_type.name.upper()} order to {self.name_cap} for "
            f"{amount} {trading_pair} {price}: {exception}")
        self._update_order_after_failure(order_id=order_id, trading_pair=trading_pair, exception=exception,
                                         reason=f"place_error: {exception}"[:200])

    def _update_timestamp(self) -> float:
        ts = self.current_timestamp
        if ts is None or math.isnan(ts):
            ts = self._time()
        return ts

    # === placing ===

    async def _place_order_and_process_update(self, order: InFlightOrder, **kwargs) -> Optional[str]:
        try:
            exchange_order_id, update_timestamp = await self._place_order(
                order_id=order.client_order_id,
                trading_pair=order.trading_pair,
                amount=order.amount,
                trade_type=order.trade_type,
                order_type=order.order_type,
                price=order.price,
                **kwargs)
        except _PlacementSettled as e:
            self.logger().info(f"Order {order.client_order_id}: {e}")
            return order.exchange_order_id
        state, reason = self._placement_results.pop(order.client_order_id, (OrderState.OPEN, "place_ack"))
        self._emit(OrderUpdate(
            client_order_id=order.client_order_id,
            exchange_order_id=str(exchange_order_id),
            trading_pair=order.trading_pair,
            update_timestamp=update_timestamp,
            new_state=state), reason)
        return exchange_order_id

    async def _place_order(self,
                           order_id: str,
                           trading_pair: str,
                           amount: Decimal,
                           trade_type: TradeType,
                           order_type: OrderType,
                           price: Decimal,
                           **kwargs) -> Tuple[str, float]:
        symbol = await self.exchange_symbol_associated_to_pair(trading_pair=trading_pair)
        payload = {
            "side": "BUY" if trade_type is TradeType.BUY else "SELL",
            "quantity": f"{amount:f}",
            "price": f"{price:f}",
            "pair": symbol,
            "postOnly": order_type is OrderType.LIMIT_MAKER,
            "customerOrderId": order_id,
            "timeInForce": "GTC",
        }
        ws_sent = True
        try:
            reply = await self._send_ws_command(CONSTANTS.PLACE_LIMIT_ORDER, payload)
        except _WsNotSent:
            ws_sent = False
        except (ConnectionError, asyncio.TimeoutError) as e:
            self.logger().warning(f"No reply to PLACE_LIMIT_ORDER for {order_id} ({type(e).__name__}): "
                                  f"falling back to REST with the same customerOrderId.")
        else:
            self.ws_placements += 1
            error = reply.get("error")
            data = found if isinstance(found := reply.get("data"), dict) else {}
            if (error or reply.get("type") != CONSTANTS.PLACE_LIMIT_WS_RESPONSE
                    or data.get("success") is False or not (data.get("orderId") or data.get("id"))):
                raise IOError(f"PLACE_LIMIT_ORDER refused: {error_text(reply)}")
            return str(data.get("orderId") or data.get("id")), self._now()

        if ws_sent:
            # The command may have reached the exchange. If the stream already settled it, do not resend.
            if order_id in self._final_emitted:
                raise _PlacementSettled("the stream settled the order while its WS reply was missing")
            known = self._stream_ids.get(order_id)
            if known is not None:
                self.logger().info(f"Order {order_id}: no WS reply, but the stream shows it as {known}; not resent.")
                return known, self._now()
        return await self._place_order_rest(order_id, trading_pair, payload, provisional=ws_sent)

    async def _place_order_rest(self, order_id: str, trading_pair: str, payload: Dict[str, Any],
                                provisional: bool) -> Tuple[str, float]:
        self.rest_placements += 1
        try:
            result = await self._api_post(path_url=CONSTANTS.PLACE_LIMIT_PATH_URL, data=payload,
                                          is_auth_required=True, limit_id=CONSTANTS.PLACE_LIMIT_PATH_URL)
        except IOError as e:
            if valr_utils.is_duplicate_customer_order_id(str(e)):
                return await self._adopt_duplicate(order_id, trading_pair)
            raise
        ex_id = result.get("id") if isinstance(result, dict) else None
        if not ex_id:
            if valr_utils.is_duplicate_customer_order_id(error_text(result)):
                return await self._adopt_duplicate(order_id, trading_pair)
            raise IOError(f"POST {CONSTANTS.PLACE_LIMIT_PATH_URL} answered {result!r}")
        ex_id = str(ex_id)
        if provisional:
            self._provisional_ids[order_id] = ex_id
            known = self._stream_ids.get(order_id)
            if known is not None and known != ex_id:
                return known, self._now()  # the WS attempt got through meanwhile: the fallback is the duplicate
        return ex_id, self._now()

    async def _adopt_duplicate(self, order_id: str, trading_pair: str) -> Tuple[str, float]:
        """The REST fallback was refused as a duplicate customerOrderId: the WS one got through."""
        order = self._order_tracker.fetch_order(order_id)
        if order is None:
            raise _PlacementSettled("no longer tracked")
        try:
            update = await self._request_order_status(order, reason="verify")
        except Exception as e:
            raise _PlacementSettled(f"refused as a duplicate, and its status is unknown yet ({e}); "
                                    f"left to status polling") from e
        self._placement_results[order_id] = (update.new_state, "verify")
        return update.exchange_order_id, update.update_timestamp

    async def _send_ws_command(self, msg_type: str, payload: Dict[str, Any]) -> Dict[str, Any]:
        """Send a command on the account stream and return its reply. A cancel answered
        RATE_LIMIT_EXCEEDED (not executed) is sent again a second later, a few times, before the caller
        sees the refusal: a cancel at shutdown must not give up on one 429. A placement is not: by the
        time it went again, the strategy may have cancelled the order it has not got."""
        ds = self._user_stream_data_source
        retries = CONSTANTS.WS_RATE_LIMIT_RETRIES if msg_type == CONSTANTS.CANCEL_LIMIT_ORDER else 0
        for attempt in range(retries + 1):
            if not ds.can_send_commands:
                raise _WsNotSent("the account WebSocket is not connected")
            try:
                reply = await ds.send_command(msg_type, payload, CONSTANTS.WS_ORDER_TIMEOUT)
            except ConnectionError as e:
                if "not connected" in str(e):
                    raise _WsNotSent(str(e)) from e
                raise
            if reply.get("type") != CONSTANTS.RATE_LIMIT_EXCEEDED or attempt == retries:
                return reply
            self.logger().info(f"{msg_type} rate limited (attempt {attempt + 1}); sending it again in "
                               f"{CONSTANTS.WS_RATE_LIMIT_BACKOFF:g} s.")
            await asyncio.sleep(CONSTANTS.WS_RATE_LIMIT_BACKOFF)
        raise AssertionError("unreachable")

    # === cancelling ===

    async def _execute_order_cancel_and_process_update(self, order: InFlightOrder) -> bool:
        cancelled = await self._place_cancel(order.client_order_id, order)
        if cancelled:
            self._emit(OrderUpdate(
                client_order_id=order.client_order_id,
                trading_pair=order.trading_pair,
                update_timestamp=self._update_timestamp(),
                new_state=OrderState.PENDING_CANCEL), "cancel_ack")
        return cancelled

    async def _place_cancel(self, order_id: str, tracked_order: InFlightOrder) -> bool:
        symbol = await self.exchange_symbol_associated_to_pair(trading_pair=tracked_order.trading_pair)
        payload = {"customerOrderId": order_id, "pair": symbol}
        try:
            reply = await self._send_ws_command(CONSTANTS.CANCEL_LIMIT_ORDER, payload)
        except (ConnectionError, asyncio.TimeoutError) as e:
            if not isinstance(e, _WsNotSent):
                self.logger().info(f"No reply to CANCEL_LIMIT_ORDER for {order_id} ({type(e).__name__}): REST.")
        else:
            self.ws_cancels += 1
            data = found if isinstance(found := reply.get("data"), dict) else {}
            if reply.get("error") or reply.get("type") != CONSTANTS.CANCEL_ORDER_WS_RESPONSE:
                text = error_text(reply)
                if valr_utils.is_order_not_found(text):
                    raise ValrOrderNotFound(f"CANCEL_LIMIT_ORDER: {text}")
                raise IOError(f"CANCEL_LIMIT_ORDER refused: {text}")
            return bool(data.get("requested", True))
        self.rest_cancels += 1
        try:
            await self._api_delete(path_url=CONSTANTS.CANCEL_ORDER_PATH_URL, data=payload,
                                   is_auth_required=True, limit_id=CONSTANTS.CANCEL_ORDER_PATH_URL)
        except IOError as e:
            if valr_utils.is_order_not_found(str(e)):
                raise ValrOrderNotFound(str(e)) from e
            raise
        return True  # 202: accepted; CANCELED comes from the stream or polling

    # === status, fills, balances, rules ===

    async def _request_order_status(self, tracked_order: InFlightOrder, reason: str = "poll") -> OrderUpdate:
        symbol = await self.exchange_symbol_associated_to_pair(trading_pair=tracked_order.trading_pair)
        path = CONSTANTS.ORDER_STATUS_BY_CID_PATH_URL.format(symbol, tracked_order.client_order_id)
        try:
            body = await self._api_get(path_url=path, is_auth_required=True, limit_id=CONSTANTS.ORDER_STATUS_LIMIT_ID)
        except IOError as e:
            if valr_utils.is_order_not_found(str(e)):
                raise ValrOrderNotFound(str(e)) from e
            raise
        if not isinstance(body, dict) or body.get("orderStatusType") not in CONSTANTS.ORDER_STATE:
            raise IOError(f"GET {path}: unexpected answer {body!r}")
        cid = tracked_order.client_order_id
        ex_id = str(body.get("orderId") or "") or None
        if ex_id and tracked_order.exchange_order_id and ex_id != tracked_order.exchange_order_id:
            if self._provisional_ids.get(cid) == tracked_order.exchange_order_id:
                self.logger().warning(f"Order {cid}: the REST fallback {tracked_order.exchange_order_id} was the "
                                      f"duplicate; the order is {ex_id}.")
                tracked_order.update_exchange_order_id(ex_id)
                self._provisional_ids.pop(cid, None)
            else:
                raise IOError(f"GET {path} describes order {ex_id}, not {tracked_order.exchange_order_id}")
        created = parse_valr_time(body.get("orderCreatedAt"))
        if created is not None:
            self._exchange_created_at.setdefault(cid, created)
        updated = parse_valr_time(body.get("orderUpdatedAt"))
        return OrderUpdate(
            client_order_id=cid,
            exchange_order_id=ex_id,
            trading_pair=tracked_order.trading_pair,
            update_timestamp=updated if updated is not None else self._now(),
            new_state=CONSTANTS.ORDER_STATE[body["orderStatusType"]],
            misc_updates={"reason": reason})

    async def _update_orders_with_error_handler(self, orders: List[InFlightOrder], error_handler: Callable):
        reason = "poll:lost" if error_handler == self._handle_update_error_for_lost_order else "poll"
        for order in orders:
            try:
                order_update = await self._request_order_status(tracked_order=order, reason=reason)
                self._emit(order_update, reason)
            except asyncio.CancelledError:
                raise
            except Exception as request_error:
                await error_handler(order, request_error)

    async def _handle_update_error_for_lost_order(self, order: InFlightOrder, error: Exception):
        if self._is_order_not_found_during_status_update_error(status_update_exception=error):
            self._update_order_after_failure(order.client_order_id, order.trading_pair, exception=error,
                                             reason="poll:lost")
        else:
            self.logger().warning(f"Error fetching status update for the lost order {order.client_order_id}: {error}.")

    async def _all_trade_updates_for_order(self, order: InFlightOrder) -> List[TradeUpdate]:
        if order.exchange_order_id is None and order.is_pending_create:
            return []
        rows = await self._account_trades(order.trading_pair)
        updates = []
        for row in rows:
            if not isinstance(row, dict):
                continue
            same = ((order.exchange_order_id is not None and str(row.get("orderId")) == order.exchange_order_id)
                    or (row.get("customerOrderId") == order.client_order_id
                        and (order.exchange_order_id is None or not row.get("orderId"))))
            if same:
                update = self._trade_update(order, row)
                if update is not None:
                    updates.append(update)
        return updates

    async def _account_trades(self, trading_pair: str) -> List[Dict[str, Any]]:
        """The account's latest fills on a pair (newest first), shared by the orders of one poll."""
        cached = self._trade_history_cache.get(trading_pair)
        now = self._now()
        if cached is not None and now - cached[0] < 1.0:
            return cached[1]
        symbol = await self.exchange_symbol_associated_to_pair(trading_pair=trading_pair)
        rows = await self._api_get(
            path_url=CONSTANTS.TRADE_HISTORY_PATH_URL.format(symbol) + f"?limit={CONSTANTS.TRADE_HISTORY_LIMIT}",
            is_auth_required=True, limit_id=CONSTANTS.TRADE_HISTORY_LIMIT_ID)
        rows = rows if isinstance(rows, list) else []
        self._trade_history_cache[trading_pair] = (now, rows)
        return rows

    def _trade_update(self, order: InFlightOrder, data: Dict[str, Any]) -> Optional[TradeUpdate]:
        trade_id = data.get("id") or data.get("tradeId")
        price, qty = decimal_or(data.get("price")), decimal_or(data.get("quantity"))
        if not trade_id or price is None or qty is None:
            return None
        fee_amount = decimal_or(data.get("fee"), Decimal(0))
        fee_token = data.get("feeCurrency")
        if isinstance(fee_token, dict):
            fee_token = fee_token.get("shortName") or fee_token.get("symbol")
        flat = [TokenAmount(token=str(fee_token), amount=fee_amount)] if fee_amount and fee_token else []
        fee = TradeFeeBase.new_spot_fee(fee_schema=self.trade_fee_schema(), trade_type=order.trade_type,
                                        flat_fees=flat)
        traded_at = parse_valr_time(data.get("tradedAt"))
        return TradeUpdate(
            trade_id=str(trade_id),
            client_order_id=order.client_order_id,
            exchange_order_id=str(data.get("orderId") or order.exchange_order_id),
            trading_pair=order.trading_pair,
            fill_timestamp=traded_at if traded_at is not None else self._now(),
            fill_price=price,
            fill_base_amount=qty,
            fill_quote_amount=price * qty,
            fee=fee,
            is_taker=False if order.order_type is OrderType.LIMIT_MAKER else True)

    async def _update_balances(self):
        rows = await self._api_get(path_url=CONSTANTS.BALANCES_PATH_URL, is_auth_required=True,
                                   limit_id=CONSTANTS.BALANCES_PATH_URL)
        seen = set()
        for row in rows if isinstance(rows, list) else []:
            currency = row.get("currency")
            if isinstance(currency, dict):
                currency = currency.get("shortName") or currency.get("symbol")
            if not currency:
                continue
            self._account_available_balances[currency] = decimal_or(row.get("available"), Decimal(0))
            self._account_balances[currency] = decimal_or(row.get("total"), Decimal(0))
            seen.add(currency)
        for currency in set(self._account_balances) - seen:
            self._account_balances.pop(currency, None)
            self._account_available_balances.pop(currency, None)

    async def _format_trading_rules(self, exchange_info: List[Dict[str, Any]]) -> List[TradingRule]:
        rules = []
        for info in exchange_info if isinstance(exchange_info, list) else []:
            if not self._is_spot_pair(info):
                continue
            try:
                places = int(info.get("baseDecimalPlaces") or 8)
                rules.append(TradingRule(
                    trading_pair=combine_to_hb_trading_pair(info["baseCurrency"], info["quoteCurrency"]),
                    min_order_size=decimal_or(info.get("minBaseAmount"), Decimal(0)),
                    max_order_size=decimal_or(info.get("maxBaseAmount"), Decimal("1e56")),
                    min_price_increment=decimal_or(info.get("tickSize"), Decimal("1e-8")),
                    min_base_amount_increment=Decimal(1).scaleb(-places),
                    min_notional_size=decimal_or(info.get("minQuoteAmount"), Decimal(0)),
                    supports_market_orders=False))
            except Exception:
                self.logger().exception(f"Error parsing the trading pair rule {info}. Skipping.")
        return rules

    @staticmethod
    def _is_spot_pair(info: Any) -> bool:
        return (isinstance(info, dict) and bool(info.get("symbol")) and bool(info.get("baseCurrency"))
                and bool(info.get("quoteCurrency")) and info.get("active", True) is not False
                and str(info.get("currencyPairType", "SPOT")).upper() == "SPOT")

    def _initialize_trading_pair_symbols_from_exchange_info(self, exchange_info: List[Dict[str, Any]]):
        mapping = bidict()
        for info in exchange_info if isinstance(exchange_info, list) else []:
            if self._is_spot_pair(info):
                mapping[info["symbol"]] = combine_to_hb_trading_pair(info["baseCurrency"], info["quoteCurrency"])
        self._set_trading_pair_symbol_map(mapping)

    async def _get_last_traded_price(self, trading_pair: str) -> float:
        symbol = await self.exchange_symbol_associated_to_pair(trading_pair=trading_pair)
        body = await self._api_get(path_url=CONSTANTS.MARKET_SUMMARY_PATH_URL.format(symbol),
                                   limit_id=CONSTANTS.MARKET_SUMMARY_LIMIT_ID)
        return float(body["lastTradedPrice"])

    # === the account stream ===

    async def _user_stream_event_listener(self):
        async for message in self._iter_user_event_queue():
            try:
                self._process_account_message(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.logger().error(f"Unexpected error handling account message {message!r}", exc_info=True)

    def _process_account_message(self, message: Dict[str, Any]):
        if not isinstance(message, dict):
            return
        msg_type = message.get("type")
        data = message.get("data")
        if msg_type == CONSTANTS.ORDER_STATUS_UPDATE and isinstance(data, dict):
            self._on_order_status_update(data)
        elif msg_type == CONSTANTS.NEW_ACCOUNT_TRADE and isinstance(data, dict):
            self._on_account_trade(data)
        elif msg_type == CONSTANTS.OPEN_ORDERS_UPDATE:
            orders = data.get("orders") if isinstance(data, dict) else data
            self._on_open_orders_update([o for o in orders or [] if isinstance(o, dict)])
        elif msg_type == CONSTANTS.BALANCE_UPDATE and isinstance(data, dict):
            self._on_balance_update(data)
        elif msg_type in (CONSTANTS.FAILED_ORDER, CONSTANTS.ORDER_PROCESSED) and isinstance(data, dict):
            self._on_order_failure_message(msg_type, data)
        elif msg_type == CONSTANTS.FAILED_CANCEL_ORDER and isinstance(data, dict):
            self._on_failed_cancel(data)
        elif msg_type == CONSTANTS.PLACE_LIMIT_WS_RESPONSE and isinstance(data, dict):
            self._on_late_place_reply(data)

    def _on_late_place_reply(self, data: Dict[str, Any]):
        """A PLACE_LIMIT_WS_RESPONSE nobody waited for any more (it came after the timeout): the WS
        placement reached the exchange. If the order is still being placed, the REST fallback need not
        be sent (or, if it was, the exchange will refuse it as a duplicate)."""
        cid, ex_id = data.get("customerOrderId"), data.get("orderId") or data.get("id")
        order = self._order_tracker.active_orders.get(str(cid)) if cid else None
        if order is not None and ex_id and order.is_pending_create:
            self._stream_ids.setdefault(order.client_order_id, str(ex_id))

    def _match(self, cid: Any, ex_id: Any, orders: Dict[str, InFlightOrder], alive: bool) -> Optional[InFlightOrder]:
        """The tracked order a message is about.

        A customerOrderId match is rejected when the message names another exchange order than
        the one we know: that is a second order with our customerOrderId (a REST fallback VALR
        refuses as a duplicate). Unless the id we know is provisional (the fallback's own 202)
        and the message shows the other order alive: then the fallback was the duplicate.
        """
        ex_id = str(ex_id) if ex_id else None
        order = orders.get(str(cid)) if cid else None
        if order is not None and ex_id and order.exchange_order_id and order.exchange_order_id != ex_id:
            if alive and self._provisional_ids.get(order.client_order_id) == order.exchange_order_id:
                self.logger().warning(f"Order {order.client_order_id}: the REST fallback {order.exchange_order_id} "
                                      f"was the duplicate; the order is {ex_id}.")
                order.update_exchange_order_id(ex_id)
                self._provisional_ids.pop(order.client_order_id, None)
            else:
                order = None
        if order is None and ex_id:
            order = next((o for o in orders.values() if o.exchange_order_id == ex_id), None)
        return order

    def _on_order_status_update(self, data: Dict[str, Any]):
        state = CONSTANTS.ORDER_STATE.get(str(data.get("orderStatusType")))
        if state is None:
            self.logger().debug(f"Ignoring order status {data.get('orderStatusType')!r}")
            return
        cid, ex_id = data.get("customerOrderId"), data.get("orderId")
        if state is OrderState.FAILED and valr_utils.is_duplicate_customer_order_id(str(data.get("failedReason"))):
            self._on_duplicate_refused(cid, ex_id)
            return
        order = self._match(cid, ex_id, self._order_tracker.all_updatable_orders, alive=state is not OrderState.FAILED)
        if order is None:
            return
        created = parse_valr_time(data.get("orderCreatedAt"))
        if created is not None:
            self._exchange_created_at.setdefault(order.client_order_id, created)
        if order.is_pending_create and ex_id and state is not OrderState.FAILED:
            self._stream_ids.setdefault(order.client_order_id, str(ex_id))
        updated = parse_valr_time(data.get("orderUpdatedAt"))
        self._emit(OrderUpdate(
            trading_pair=order.trading_pair,
            update_timestamp=updated if updated is not None else self._now(),
            new_state=state,
            client_order_id=order.client_order_id,
            exchange_order_id=str(ex_id) if ex_id else order.exchange_order_id), "ws:ORDER_STATUS_UPDATE")

    def _on_order_failure_message(self, msg_type: str, data: Dict[str, Any]):
        if msg_type == CONSTANTS.ORDER_PROCESSED:
            if data.get("success") is not False:
                return  # ORDER_STATUS_UPDATE tells the order's state
            text = str(data.get("failureReason") or "")
        else:
            text = str(data.get("message") or "")
        cid, ex_id = data.get("customerOrderId"), data.get("orderId")
        if valr_utils.is_duplicate_customer_order_id(text):
            self._on_duplicate_refused(cid, ex_id)
            return
        order = self._match(cid, ex_id, self._order_tracker.all_updatable_orders, alive=False)
        if order is None:
            return
        self._emit(OrderUpdate(
            trading_pair=order.trading_pair,
            update_timestamp=self._now(),
            new_state=OrderState.FAILED,
            client_order_id=order.client_order_id,
            exchange_order_id=order.exchange_order_id,
            misc_updates={"error_message": text, "error_type": msg_type}), f"ws:{msg_type}")

    def _on_duplicate_refused(self, cid: Any, ex_id: Any):
        """VALR refused an order as a duplicate customerOrderId: another order with our id is alive
        (the WS placement got through and the REST fallback was refused). Never fail ours: ask."""
        orders = self._order_tracker.all_updatable_orders
        order = orders.get(str(cid)) if cid else None
        if order is None and ex_id:
            order = next((o for o in orders.values() if o.exchange_order_id == str(ex_id)), None)
        if order is None:
            return
        if ex_id and order.exchange_order_id == str(ex_id):
            self._provisional_ids[order.client_order_id] = str(ex_id)  # the id we hold is the refused one
        self.logger().info(f"Order {order.client_order_id}: a duplicate ({ex_id}) was refused; querying its status.")
        self._start_verify(order)

    def _on_failed_cancel(self, data: Dict[str, Any]):
        order = self._match(data.get("customerOrderId"), data.get("orderId"),
                            self._order_tracker.all_updatable_orders, alive=False)
        if order is None:
            return
        text = str(data.get("message") or "")
        self.logger().info(f"Cancel of {order.client_order_id} failed: {text}")
        if valr_utils.is_order_not_found(text):
            self._spawn(self._order_tracker.process_order_not_found(order.client_order_id))
        else:
            self._start_verify(order)

    def _on_account_trade(self, data: Dict[str, Any]):
        order = self._match(data.get("customerOrderId"), data.get("orderId"),
                            self._order_tracker.all_fillable_orders, alive=True)
        if order is None:
            return
        update = self._trade_update(order, data)
        if update is not None:
            self._order_tracker.process_trade_update(update)

    def _on_balance_update(self, data: Dict[str, Any]):
        currency = data.get("currency")
        if isinstance(currency, dict):
            currency = currency.get("shortName") or currency.get("symbol")
        if not currency:
            return
        available, total = decimal_or(data.get("available")), decimal_or(data.get("total"))
        if available is not None:
            self._account_available_balances[currency] = available
        if total is not None:
            self._account_balances[currency] = total

    # === verification (a status query whose answer is applied) ===

    def _start_verify(self, order: InFlightOrder):
        if order.client_order_id not in self._verifying:
            self._verifying.add(order.client_order_id)
            self._spawn(self._verify_order(order))

    async def _verify_order(self, order: InFlightOrder):
        cid = order.client_order_id
        try:
            update = await self._request_order_status(order, reason="verify")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            if self._is_order_not_found_during_status_update_error(e):
                self.logger().info(f"Order {cid} not found while verifying it.")
                await self._order_tracker.process_order_not_found(cid)
            else:
                self.logger().warning(f"Verifying order {cid} failed: {e}")
        else:
            self._emit(update, "verify")
        finally:
            self._verifying.discard(cid)

    # === OPEN_ORDERS_UPDATE ===

    @staticmethod
    def _snapshot_ids(orders: Iterable[Dict[str, Any]]) -> Tuple[Set[str], Set[str]]:
        ex_ids, cids = set(), set()
        for o in orders:
            if o.get("orderId"):
                ex_ids.add(str(o["orderId"]))
            if o.get("customerOrderId"):
                cids.add(str(o["customerOrderId"]))
        return ex_ids, cids

    @staticmethod
    def _in_snapshot(order: InFlightOrder, ex_ids: Set[str], cids: Set[str]) -> bool:
        return order.client_order_id in cids or (order.exchange_order_id is not None
                                                 and order.exchange_order_id in ex_ids)

    def _on_open_orders_update(self, orders: List[Dict[str, Any]]):
        if self._policy == "ignore":
            return
        if self._policy == "reconcile":
            self._reconcile_snapshot(orders)
            return
        received_at = self._now()
        ex_ids, cids = self._snapshot_ids(orders)
        for order in list(self._order_tracker.active_orders.values()):
            if order.is_done or self._in_snapshot(order, ex_ids, cids):
                continue
            if self._policy == "age-guard":
                age = received_at - order.creation_timestamp
                if not age >= self._age_guard_s:  # NaN (no clock yet) counts as young
                    continue
            self._emit(OrderUpdate(
                trading_pair=order.trading_pair,
                update_timestamp=received_at,
                new_state=OrderState.CANCELED,
                client_order_id=order.client_order_id,
                exchange_order_id=order.exchange_order_id), "open_orders_update:absent")

    def _reconcile_snapshot(self, orders: List[Dict[str, Any]]):
        received_at = self._now()
        ex_ids, cids = self._snapshot_ids(orders)
        by_cid = {str(o["customerOrderId"]): o for o in orders if o.get("customerOrderId")}
        by_ex = {str(o["orderId"]): o for o in orders if o.get("orderId")}
        snap_time = None
        for o in orders:
            for key in ("updatedAt", "createdAt"):
                t = parse_valr_time(o.get(key))
                if t is not None and (snap_time is None or t > snap_time):
                    snap_time = t
        active = self._order_tracker.active_orders
        for cid in [c for c in self._absent if c not in active]:
            del self._absent[cid]
        for order in list(active.values()):
            cid = order.client_order_id
            if order.is_done:
                continue
            if self._in_snapshot(order, ex_ids, cids):
                self._absent.pop(cid, None)
                wire = by_cid.get(cid) or by_ex.get(order.exchange_order_id or "")
                if wire is not None:
                    created = parse_valr_time(wire.get("createdAt"))
                    if created is not None:
                        self._exchange_created_at.setdefault(cid, created)
                if order.is_pending_create and cid not in self._final_emitted:
                    wire_id = str(wire["orderId"]) if wire is not None and wire.get("orderId") else None
                    if wire_id is not None:
                        self._stream_ids.setdefault(cid, wire_id)
                    self._emit(OrderUpdate(
                        trading_pair=order.trading_pair,
                        update_timestamp=received_at,
                        new_state=OrderState.OPEN,
                        client_order_id=cid,
                        exchange_order_id=wire_id), "open_orders_update:present")
                continue
            if not self._is_absence_evidence(order, received_at, snap_time):
                continue
            count, first_at = self._absent.get(cid, (0, received_at))
            count += 1
            if count >= CONSTANTS.RECONCILE_MIN_SNAPSHOTS and received_at - first_at >= CONSTANTS.RECONCILE_MIN_SECONDS:
                del self._absent[cid]  # start over if the order proves alive
                self.logger().info(f"Order {cid} missing from {count} open-order lists: verifying its status.")
                self._start_verify(order)
            else:
                self._absent[cid] = (count, first_at)

    def _is_absence_evidence(self, order: InFlightOrder, received_at: float, snap_time: Optional[float]) -> bool:
        cid = order.client_order_id
        confirmed_at = self._open_confirmed_at.get(cid)
        if order.exchange_order_id is None or confirmed_at is None or order.current_state not in LIVE_STATES:
            return False
        if received_at <= confirmed_at:
            return False
        created = self._exchange_created_at.get(cid)
        if snap_time is not None and created is not None and snap_time < created:
            return False
        return True
