"""The simulated VALR matching engine and accounts (pure: no sockets, no clock).

Every call takes ``ts_ms`` from the caller. Commands are two-stage, like VALR:
``submit_*`` is the synchronous acknowledgement (HTTP 202 / WS reply) that hands out the
new order id; ``process_next`` is the matching engine handling the oldest submitted
command, returning the domain events it caused. Everything that depends on the book or
on balances is decided at processing time and reported as events, never raised.

Ids (orders, trades, history records) are UUIDs drawn from ``random.Random(seed)``:
the same seed and the same commands give the same ids and the same events.
"""

from __future__ import annotations

import itertools
import operator
import random
import re
from collections import deque
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Iterable, Mapping

from replay.decimals import amount_problem, exact_methods

from .book import ZERO, Order, OrderBook
from .events import (
    AccountTrade,
    BalanceChanged,
    BookChanged,
    CancelFailed,
    Event,
    OpenOrdersChanged,
    OrderFailed,
    OrderModified,
    OrderProcessed,
    OrderStatusChanged,
    PublicTrade,
)
from .model import (
    Balance,
    BookView,
    CancelRequest,
    ExchangeError,
    LimitRequest,
    MarketRequest,
    MarketSummary,
    ModifyMatchStrategy,
    ModifyRequest,
    OrderStatus,
    OrderType,
    OrderView,
    PairSpec,
    Side,
    StopLimitRequest,
    Submitted,
    TimeInForce,
    Trade,
)

# --- VALR's texts -----------------------------------------------------------------------
# Synchronous refusals. VALR's exact codes for these are not documented; -1 is the code
# CCXT shows for "Invalid Order. ", used here for every synchronous refusal. [INF]
ERR_CODE_INVALID = -1
# Reason texts at processing time.
REASON_MIN_SIZE = "Minimum order size not met"  # [C-code CCXT, code -12007]; details appended below
REASON_INSUFFICIENT_BALANCE = "Insufficient Balance"  # [C-doc3 listed reason; capitalisation per brief]
REASON_POST_ONLY = "Post only cancelled as it would have matched"  # [C-code Rust comment]
REASON_DUPLICATE_CID = "Duplicate customer order id's are not allowed"  # [C-code CCXT, code -11502]
REASON_TICK = "Price must be a multiple of the tick size"  # [INF] VALR's text unknown
REASON_DECIMALS = "Quantity has more decimal places than allowed"  # [INF]
REASON_MAX_SIZE = "Maximum order size exceeded"  # [INF]
REASON_FOK = "Insufficient liquidity to fill FOK order"  # [INF] C-doc3 lists "insufficient liquidity (FOK/IOC)"
REASON_NO_LIQUIDITY = "Insufficient liquidity"  # [INF] market order that finds no counterparty
REASON_PAIR_INACTIVE = "Currency pair is not active"  # [INF]
REASON_SELF_TRADE = "Self trade prevention: resting order cancelled"  # [INF] mode of VALR's STP inferred
# Cancel of an unknown or already closed order. VALR's documented FAILED_CANCEL_ORDER text is
# "An error occurred while cancelling your order." [C-off]; we use a more specific not-found
# text, which HB's "not found" matching also recognises. [INF]
CANCEL_NOT_FOUND = "Order does not exist"
CANCEL_ALREADY_CLOSED = "Order is already closed"  # [INF]
# Stop-limit orders: VALR's text for a stop whose trigger is already reached [C-off Postman
# "Order History" example, failedReason of a stop-loss-limit order].
REASON_STOP_IMMEDIATE = "Stop order failed as it would have been triggered immediately"
# Modifications. The "nothing to modify" text is VALR's [C-off Postman "Modify Order V2" example,
# code -21303]; the others are [INF].
REASON_MODIFY_NOTHING = "Modify order would not have modified anything and was cancelled"
REASON_MODIFY_NOT_OPEN = "Only open limit orders can be modified"

#: closed orders an account remembers (order history, status by id); VALR keeps more, a simulation has no
#: use for hours-old orders and would grow without end (the background market closes dozens a second)
CLOSED_KEPT = 2_000

# Command kinds that create an order (and hand out its id at once).
_PLACEMENTS = ("limit", "market", "stop")

_BY_SEQ = operator.attrgetter("seq")
# uuid.UUID(int=..., version=4): the variant bits set to RFC 4122, the version bits to 4
_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64)) & ((1 << 128) - 1)
_UUID_V4 = (0x8000 << 48) | (4 << 76)

# VALR: customerOrderId is alphanumeric plus dashes, at most 50 characters. [C-doc3]
_CID_RE = re.compile(r"^[A-Za-z0-9-]{1,50}$")


@dataclass
class _Account:
    name: str
    balances: dict[str, list[Decimal]] = field(default_factory=dict)  # currency -> [available, reserved]
    updated_ms: dict[str, int] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)  # every processed order still known, by id
    by_cid: dict[str, list[Order]] = field(default_factory=dict)  # oldest first
    open: dict[str, Order] = field(default_factory=dict)
    closed: dict[str, Order] = field(default_factory=dict)  # by id, in closing order (the latest closed_kept)
    closed_kept: int = CLOSED_KEPT

    def remember_closed(self, order: Order) -> None:
        """An order left the book for good. The account keeps its latest ``closed_kept`` closed orders
        (order history, status by id): an older one is forgotten, so a long run's memory stays flat."""
        if order.order_id in self.closed:
            return
        self.closed[order.order_id] = order
        if len(self.closed) > self.closed_kept:
            oldest = next(iter(self.closed.values()))
            del self.closed[oldest.order_id]
            self.orders.pop(oldest.order_id, None)
            cid = oldest.customer_order_id
            same = self.by_cid.get(cid) if cid is not None else None
            if cid is not None and same is not None:
                same[:] = [o for o in same if o is not oldest]
                if not same:
                    del self.by_cid[cid]

    def bal(self, currency: str) -> list[Decimal]:
        b = self.balances.get(currency)
        if b is None:
            b = self.balances[currency] = [ZERO, ZERO]
        return b

    def open_views(self) -> tuple[OrderView, ...]:
        # the hot path of every command (OPEN_ORDERS_UPDATE): a view is cached on its order until it changes
        return tuple([o._view or o.view() for o in sorted(self.open.values(), key=_BY_SEQ)])


@dataclass
class _Command:
    ticket: int
    kind: str  # "limit" | "market" | "cancel"
    account: str
    req: LimitRequest | MarketRequest | CancelRequest | StopLimitRequest | ModifyRequest
    order_id: str | None
    ts_ms: int
    request_id: str | None = None  # a modification's modifyRequestId

    @property
    def new_order_id(self) -> str:
        """The id of the order a limit or market command creates (``_enqueue`` always gets one for them)."""
        if self.order_id is None:
            raise ValueError(f"{self.kind} command {self.ticket} has no order id")
        return self.order_id


@dataclass
class _PairStats:
    first_price: Decimal | None = None
    last_price: Decimal | None = None
    high: Decimal | None = None
    low: Decimal | None = None
    base_volume: Decimal = ZERO
    quote_volume: Decimal = ZERO
    last_ms: int = 0


class _Ctx:
    """Collects the events of one command, in the order the brief fixes."""

    def __init__(self, ex: "Exchange", ts_ms: int):
        self.ex = ex
        self.ts = ts_ms
        self.quiet = ex.quiet_accounts
        self.events: list[Event] = []
        self.open_changed: dict[str, None] = {}  # accounts, insertion ordered
        self.dirty: dict[tuple[str, str], None] = {}  # (account, currency) changed, not yet emitted
        self.public: list[PublicTrade] = []
        self.books: dict[str, None] = {}

    def add(self, ev: Event) -> None:
        if self.quiet and getattr(ev, "account", None) in self.quiet:
            return
        self.events.append(ev)

    def move(self, account: str, currency: str, d_avail: Decimal, d_res: Decimal) -> None:
        acct = self.ex._accounts[account]
        b = acct.bal(currency)
        b[0] += d_avail
        b[1] += d_res
        acct.updated_ms[currency] = self.ts
        self.dirty[(account, currency)] = None

    def emit_balance(self, account: str, currency: str) -> None:
        self.dirty.pop((account, currency), None)
        if account in self.quiet:
            return
        self.add(BalanceChanged(self.ts, account, self.ex._balance(account, currency)))

    def status(self, order: Order) -> None:
        if order.account in self.quiet:
            return
        self.add(OrderStatusChanged(self.ts, order.account, order.view()))

    def finish(self) -> list[Event]:
        for account in self.open_changed:
            if account in self.quiet:
                continue
            self.add(OpenOrdersChanged(self.ts, account, self.ex._accounts[account].open_views()))
        for account, currency in list(self.dirty):
            self.emit_balance(account, currency)
        self.events.extend(self.public)
        for pair in self.books:
            self.add(BookChanged(self.ts, pair))
        return self.events


def _floor_to(q: Decimal, decimals: int) -> Decimal:
    return q.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_DOWN)


def _has_more_decimals(q: Decimal, decimals: int) -> bool:
    return q.scaleb(decimals) % 1 != 0


@exact_methods
class Exchange:
    """A VALR-like spot exchange: books, balances, order lifecycle, price-time matching."""

    def __init__(self, pairs: Iterable[PairSpec], *, seed: int = 0):
        self.pairs: dict[str, PairSpec] = {}
        for p in pairs:
            if p.symbol in self.pairs:
                raise ValueError(f"duplicate pair {p.symbol!r}")
            self.pairs[p.symbol] = p
        self.seed = seed
        self._rng = random.Random(seed)
        self._books = {s: OrderBook(s) for s in self.pairs}
        self._stats = {s: _PairStats() for s in self.pairs}
        self._trades: dict[str, deque[Trade]] = {s: deque(maxlen=1000) for s in self.pairs}
        self._trade_seq = {s: 0 for s in self.pairs}
        self._accounts: dict[str, _Account] = {}
        self._queue: deque[_Command] = deque()
        self._pending_orders: dict[str, _Command] = {}  # order id -> its unprocessed placement
        self._stops: dict[str, dict[str, Order]] = {s: {} for s in self.pairs}  # pair -> waiting stop orders
        self._ticket = 0
        self._seq = 0
        #: accounts whose own events nobody reads (the fake server's background market): the events
        #: of their orders, balances and fills are not built (what happens to them is the same)
        self.quiet_accounts: frozenset[str] = frozenset()

    # --- accounts ---------------------------------------------------------------------
    def open_account(self, account: str, balances: Mapping[str, Decimal], *, closed_kept: int = CLOSED_KEPT) -> None:
        """Open ``account`` with ``balances``; it remembers its latest ``closed_kept`` closed orders (order
        history, status by id)."""
        if account in self._accounts:
            raise ValueError(f"account {account!r} already exists")
        if closed_kept < 1:
            raise ValueError(f"account {account!r}: closed_kept must be at least 1")
        acct = _Account(account, closed_kept=closed_kept)
        for cur, amount in balances.items():
            amount = Decimal(amount)
            if amount < 0:
                raise ValueError(f"account {account!r}: negative balance for {cur}")
            acct.balances[cur] = [amount, ZERO]
            acct.updated_ms[cur] = 0
        self._accounts[account] = acct

    @property
    def accounts(self) -> list[str]:
        return list(self._accounts)

    def _account(self, account: str) -> _Account:
        try:
            return self._accounts[account]
        except KeyError:
            raise ExchangeError(ERR_CODE_INVALID, f"Unknown account: {account}", "account") from None

    def _pair(self, pair: str) -> PairSpec:
        try:
            return self.pairs[pair]
        except KeyError:
            # [INF] VALR's code/text for an unknown pair are not documented.
            raise ExchangeError(ERR_CODE_INVALID, f"Invalid currency pair: {pair}", "pair") from None

    def _new_id(self) -> str:
        # str(uuid.UUID(int=bits, version=4)), spelled out: one is drawn for every order and fill
        n = (self._rng.getrandbits(128) & _UUID_CLEAR) | _UUID_V4
        h = "%032x" % n
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    # --- submit (synchronous acknowledgement) -------------------------------------------
    def _check_common(self, account: str, pair: str, side: object, cid: str | None) -> None:
        self._account(account)
        self._pair(pair)
        if not isinstance(side, Side):
            raise ExchangeError(ERR_CODE_INVALID, f"Invalid side: {side!r}", "side")
        if cid is not None and not _CID_RE.match(cid):
            raise ExchangeError(
                ERR_CODE_INVALID,
                "customerOrderId must be 1-50 characters, letters, digits and dashes",
                "customerOrderId",
            )

    @staticmethod
    def _positive(value: object, name: str) -> None:
        if not isinstance(value, Decimal) or not value.is_finite() or value <= 0:
            raise ExchangeError(ERR_CODE_INVALID, f"{name} must be a positive number", name)
        # refused at the door: past these bounds the processing arithmetic would raise, and an
        # acknowledged order would vanish without ORDER_PROCESSED or FAILED_ORDER
        problem = amount_problem(value)
        if problem is not None:
            raise ExchangeError(ERR_CODE_INVALID, f"{name} {problem}", name)

    def _command(self, ts_ms: int, kind: str, account: str, req, order_id: str | None,
                 request_id: str | None = None) -> _Command:
        self._ticket += 1
        return _Command(self._ticket, kind, account, req, order_id, ts_ms, request_id)

    def _enqueue(self, ts_ms: int, kind: str, account: str, req, order_id: str | None,
                 customer_order_id: str | None = None, request_id: str | None = None) -> Submitted:
        cmd = self._command(ts_ms, kind, account, req, order_id, request_id)
        self._queue.append(cmd)
        if kind in _PLACEMENTS and order_id is not None:
            self._pending_orders[order_id] = cmd
        cid = req.customer_order_id if customer_order_id is None else customer_order_id
        return Submitted(self._ticket, order_id, cid, request_id)

    def submit_limit(self, ts_ms: int, account: str, req: LimitRequest) -> Submitted:
        return self._enqueue(ts_ms, "limit", account, req, self._check_limit(account, req))

    def _check_limit(self, account: str, req: LimitRequest) -> str:
        """Refuse a limit order at the door (ExchangeError), or draw its order id."""
        self._check_common(account, req.pair, req.side, req.customer_order_id)
        self._positive(req.quantity, "quantity")
        self._positive(req.price, "price")
        if not isinstance(req.time_in_force, TimeInForce):
            raise ExchangeError(ERR_CODE_INVALID, f"Invalid timeInForce: {req.time_in_force!r}", "timeInForce")
        return self._new_id()

    def submit_market(self, ts_ms: int, account: str, req: MarketRequest) -> Submitted:
        self._check_common(account, req.pair, req.side, req.customer_order_id)
        if (req.base_amount is None) == (req.quote_amount is None):
            raise ExchangeError(
                ERR_CODE_INVALID, "Exactly one of baseAmount and quoteAmount is required", "baseAmount"
            )
        if req.base_amount is not None:
            self._positive(req.base_amount, "baseAmount")
        else:
            self._positive(req.quote_amount, "quoteAmount")
        return self._enqueue(ts_ms, "market", account, req, self._new_id())

    def submit_stop_limit(self, ts_ms: int, account: str, req: StopLimitRequest) -> Submitted:
        self._check_common(account, req.pair, req.side, req.customer_order_id)
        self._positive(req.quantity, "quantity")
        self._positive(req.price, "price")
        self._positive(req.stop_price, "stopPrice")
        if not isinstance(req.order_type, OrderType) or not req.order_type.is_stop:
            raise ExchangeError(ERR_CODE_INVALID, f"Invalid type: {req.order_type!r}", "type")
        if not isinstance(req.time_in_force, TimeInForce):
            raise ExchangeError(ERR_CODE_INVALID, f"Invalid timeInForce: {req.time_in_force!r}", "timeInForce")
        return self._enqueue(ts_ms, "stop", account, req, self._new_id())

    def _named_order(self, acct: _Account, account: str, pair: str, order_id: str | None,
                     customer_order_id: str | None) -> tuple[str | None, str | None]:
        """The (order id, customerOrderId) a cancel or modify names, as far as known now: the
        open order with that customerOrderId, else a placement still in the queue, else the
        latest order with it; an order id's own customerOrderId."""
        if customer_order_id is None:
            order = acct.orders.get(order_id or "")
            pending = self._pending_orders.get(order_id or "")
            cid = (order.customer_order_id if order is not None
                   else pending.req.customer_order_id if pending is not None else None)
            return order_id, cid
        order = self._by_cid(acct, customer_order_id, pair)
        if order is not None and order.is_open:
            return order.order_id, customer_order_id
        # The order it names may still be waiting in the queue.
        named = next(
            (
                c.order_id
                for c in reversed(self._queue)
                if c.kind in _PLACEMENTS
                and c.account == account
                and c.req.customer_order_id == customer_order_id
            ),
            order.order_id if order is not None else None,
        )
        return named, customer_order_id

    def submit_cancel(self, ts_ms: int, account: str, req: CancelRequest) -> Submitted:
        """Acknowledge a cancel. The Submitted names the order (id and customerOrderId) as far as
        it is known: VALR's CANCEL_ORDER_WS_RESPONSE echoes both even for a cancel by orderId
        [C-off Postman WebSocket "CANCEL_LIMIT_ORDER" example]."""
        named, cid = self._check_cancel(account, req)
        return self._enqueue(ts_ms, "cancel", account, req, named, customer_order_id=cid)

    def _check_cancel(self, account: str, req: CancelRequest) -> tuple[str | None, str | None]:
        """Refuse a cancel at the door (ExchangeError), or the (order id, customerOrderId) it names."""
        acct = self._account(account)
        self._pair(req.pair)
        if (req.order_id is None) == (req.customer_order_id is None):
            raise ExchangeError(
                ERR_CODE_INVALID, "Exactly one of orderId and customerOrderId is required", "orderId"
            )
        return self._named_order(acct, account, req.pair, req.order_id, req.customer_order_id)

    def submit_modify(self, ts_ms: int, account: str, req: ModifyRequest) -> Submitted:
        """Acknowledge a modification (its ``request_id`` is VALR's modifyRequestId); the engine
        applies it in turn and reports an OrderModified."""
        acct = self._account(account)
        self._pair(req.pair)
        if (req.order_id is None) == (req.customer_order_id is None):
            raise ExchangeError(
                ERR_CODE_INVALID, "Exactly one of orderId and customerOrderId is required", "orderId"
            )
        if req.new_remaining is not None and req.new_total is not None:
            raise ExchangeError(ERR_CODE_INVALID, "Give newRemainingQuantity or newTotalQuantity, not both",
                                "newTotalQuantity")
        if req.new_price is None and req.new_remaining is None and req.new_total is None:
            raise ExchangeError(ERR_CODE_INVALID, "Nothing to modify: give newPrice or a new quantity", "newPrice")
        for value, name in ((req.new_price, "newPrice"), (req.new_remaining, "newRemainingQuantity"),
                            (req.new_total, "newTotalQuantity")):
            if value is not None:
                self._positive(value, name)
        if not isinstance(req.strategy, ModifyMatchStrategy):
            raise ExchangeError(ERR_CODE_INVALID, f"Invalid modifyMatchStrategy: {req.strategy!r}",
                                "modifyMatchStrategy")
        named, cid = self._named_order(acct, account, req.pair, req.order_id, req.customer_order_id)
        return self._enqueue(ts_ms, "modify", account, req, named, customer_order_id=cid,
                             request_id=self._new_id())

    @property
    def pending(self) -> int:
        return len(self._queue)

    # --- processing ---------------------------------------------------------------------
    def process_next(self, ts_ms: int) -> list[Event]:
        if not self._queue:
            return []
        cmd = self._queue.popleft()
        if cmd.kind in _PLACEMENTS:
            self._pending_orders.pop(cmd.new_order_id, None)
        return self._run(ts_ms, cmd)

    def process_all(self, ts_ms: int) -> list[Event]:
        out: list[Event] = []
        while self._queue:
            out.extend(self.process_next(ts_ms))
        return out

    def _run(self, ts_ms: int, cmd: _Command) -> list[Event]:
        ctx = _Ctx(self, ts_ms)
        if cmd.kind == "limit":
            self._process_limit(ctx, cmd)
        elif cmd.kind == "market":
            self._process_market(ctx, cmd)
        elif cmd.kind == "stop":
            self._process_stop(ctx, cmd)
        elif cmd.kind == "modify":
            self._process_modify(ctx, cmd)
        else:
            self._process_cancel(ctx, cmd)
        self._trigger_stops(ctx)
        return ctx.finish()

    def execute(
        self, ts_ms: int, account: str, req: LimitRequest | MarketRequest | CancelRequest | StopLimitRequest
    ) -> tuple[str | None, list[Event]]:
        """Submit and process one command at once, bypassing the queue.

        For participants other than the connector under test (the background market):
        their orders reach the engine in between the queued ones without flushing them.
        Returns the order id (for a cancel: the named order's id, if known) and the events.
        """
        return self._execute(ts_ms, account, req)

    def _execute(
        self, ts_ms: int, account: str, req: LimitRequest | MarketRequest | CancelRequest | StopLimitRequest
    ) -> tuple[str | None, list[Event]]:
        """``execute`` for callers already in the EXACT decimal context (the background market)."""
        # Limit orders and cancels (all the background market sends) skip the queue: checked as
        # submit_* checks them, then run, with the same ticket and order id as through the queue.
        if isinstance(req, LimitRequest):
            cmd = self._command(ts_ms, "limit", account, req, self._check_limit(account, req))
            return cmd.order_id, self._run(ts_ms, cmd)
        if isinstance(req, CancelRequest):
            cmd = self._command(ts_ms, "cancel", account, req, self._check_cancel(account, req)[0])
            return cmd.order_id, self._run(ts_ms, cmd)
        if isinstance(req, MarketRequest):
            sub = self.submit_market(ts_ms, account, req)
        elif isinstance(req, StopLimitRequest):
            sub = self.submit_stop_limit(ts_ms, account, req)
        else:
            sub = self.submit_cancel(ts_ms, account, req)
        cmd = self._queue.pop()  # the command just enqueued
        if cmd.kind in _PLACEMENTS:
            self._pending_orders.pop(cmd.new_order_id, None)
        return sub.order_id, self._run(ts_ms, cmd)

    def _resting(self, account: str, pair: str) -> list[Order]:
        """``account``'s open orders on ``pair``, oldest first (``open_orders`` without the views)."""
        return sorted((o for o in self._accounts[account].open.values() if o.pair == pair), key=_BY_SEQ)

    def _replace_quiet(self, ts_ms: int, account: str, cancel: list[Order], place: list[LimitRequest]) -> list[Event]:
        """Cancel ``cancel`` (open orders of ``account``), then place ``place``, at once: what ``_execute``
        of each request in turn does (the same state, order ids, tickets and events), but for one
        BookChanged per pair instead of one per request. For the background market's ladder refresh,
        forty requests a second: on an account in ``quiet_accounts`` (whose own events are not built)
        the requests that cannot trade share one event context; one that would trade runs on its own,
        as ``_execute`` runs it. Any other account takes ``_execute`` itself."""
        events: list[Event] = []
        if account not in self.quiet_accounts:
            for order in cancel:
                events.extend(self._execute(ts_ms, account, CancelRequest(order.pair, order_id=order.order_id))[1])
            for req in place:
                events.extend(self._execute(ts_ms, account, req)[1])
            return events
        ctx = _Ctx(self, ts_ms)
        for order in cancel:
            if not order.is_open or order.account != account:
                raise ValueError(f"{order.order_id} is not an open order of {account}")
            self._ticket += 1  # as _command: a cancel takes a ticket
            self._cancel_order(ctx, order)
        for req in place:
            cmd = self._command(ts_ms, "limit", account, req, self._check_limit(account, req))
            best = self._books[req.pair].best_price(req.side.opposite)
            if best is not None and (best <= req.price if req.side is Side.BUY else best >= req.price):
                events.extend(ctx.finish())
                ctx = _Ctx(self, ts_ms)
                events.extend(self._run(ts_ms, cmd))
            else:  # rests without trading: no trade, no stop reached, nothing of its own to report
                self._process_limit(ctx, cmd)
        events.extend(ctx.finish())
        return events

    def adopt_limit(self, ts_ms: int, account: str, req: LimitRequest, order_id: str) -> list[Event]:
        """Place a limit order under an id given from outside, at once (bypassing the queue).

        For orders carried over into the simulation from elsewhere: a replayed capture's
        open orders, when the simulated exchange takes over from a playback.
        """
        if order_id in self._pending_orders or any(order_id in a.orders for a in self._accounts.values()):
            raise ExchangeError(ERR_CODE_INVALID, f"order id {order_id} is already in use", "orderId")
        self.submit_limit(ts_ms, account, req)
        cmd = self._queue.pop()  # the command just enqueued, under a fresh id: use the given one
        self._pending_orders.pop(cmd.new_order_id, None)
        cmd.order_id = order_id
        return self._run(ts_ms, cmd)

    def reseed_ids(self, seed: int | float | str | bytes | bytearray | None) -> None:
        """Draw order, trade and history ids from another sequence from now on (so that ids
        adopted from a capture made with this exchange's seed cannot repeat)."""
        self._rng.seed(seed)

    # conveniences
    def place_limit(self, ts_ms: int, account: str, req: LimitRequest) -> tuple[str, list[Event]]:
        sub = self.submit_limit(ts_ms, account, req)
        return sub.placed_order_id, self.process_all(ts_ms)

    def place_market(self, ts_ms: int, account: str, req: MarketRequest) -> tuple[str, list[Event]]:
        sub = self.submit_market(ts_ms, account, req)
        return sub.placed_order_id, self.process_all(ts_ms)

    def cancel(self, ts_ms: int, account: str, req: CancelRequest) -> list[Event]:
        self.submit_cancel(ts_ms, account, req)
        return self.process_all(ts_ms)

    def cancel_all(self, ts_ms: int, account: str, pair: str | None = None) -> tuple[list[str], list[Event]]:
        """Cancel every open order of ``account`` (on ``pair``) now, bypassing the queue."""
        acct = self._account(account)
        if pair is not None:
            self._pair(pair)
        ctx = _Ctx(self, ts_ms)
        ids = []
        for order in sorted(acct.open.values(), key=lambda o: o.seq):
            if pair is None or order.pair == pair:
                self._cancel_order(ctx, order)
                ids.append(order.order_id)
        return ids, ctx.finish()

    # --- placement ------------------------------------------------------------------------
    def _new_order(self, cmd: _Command, ts_ms: int) -> Order:
        req = cmd.req
        self._seq += 1
        if isinstance(req, StopLimitRequest):
            return Order(
                order_id=cmd.new_order_id, account=cmd.account, pair=req.pair, side=req.side,
                order_type=req.order_type, time_in_force=req.time_in_force, price=req.price,
                original_quantity=req.quantity, remaining_quantity=req.quantity,
                status=OrderStatus.ACTIVE, created_ms=cmd.ts_ms, updated_ms=ts_ms,
                customer_order_id=req.customer_order_id, seq=self._seq, stop_price=req.stop_price,
            )  # fmt: skip
        if isinstance(req, LimitRequest):
            otype = OrderType.POST_ONLY_LIMIT if req.post_only else OrderType.LIMIT
            return Order(
                order_id=cmd.new_order_id, account=cmd.account, pair=req.pair, side=req.side,
                order_type=otype, time_in_force=req.time_in_force, price=req.price,
                original_quantity=req.quantity, remaining_quantity=req.quantity,
                status=OrderStatus.PLACED, created_ms=cmd.ts_ms, updated_ms=ts_ms,
                customer_order_id=req.customer_order_id, seq=self._seq,
            )  # fmt: skip
        # Market orders: the quantity is the base amount, or for a quote-amount order the base
        # quantity the book walk planned (set by the caller). [INF] VALR's field values unknown.
        if isinstance(req, (CancelRequest, ModifyRequest)):
            raise TypeError(f"{cmd.kind} command {cmd.ticket} creates no order")
        qty = req.base_amount if req.base_amount is not None else ZERO
        return Order(
            order_id=cmd.new_order_id, account=cmd.account, pair=req.pair, side=req.side,
            order_type=OrderType.MARKET, time_in_force=TimeInForce.IOC, price=None,
            original_quantity=qty, remaining_quantity=qty, status=OrderStatus.PLACED,
            created_ms=cmd.ts_ms, updated_ms=ts_ms, customer_order_id=req.customer_order_id,
            seq=self._seq,
        )  # fmt: skip

    def _remember(self, order: Order) -> None:
        acct = self._accounts[order.account]
        acct.orders[order.order_id] = order
        if order.customer_order_id is not None:
            acct.by_cid.setdefault(order.customer_order_id, []).append(order)

    def _fail(self, ctx: _Ctx, order: Order, reason: str) -> None:
        order.status = OrderStatus.FAILED
        order.failed_reason = reason
        order.updated_ms = ctx.ts
        order.touch()
        self._remember(order)
        self._accounts[order.account].remember_closed(order)
        ctx.add(OrderProcessed(ctx.ts, order.account, order.order_id, order.customer_order_id, False, reason))
        ctx.add(OrderFailed(ctx.ts, order.account, order.order_id, order.customer_order_id, reason))
        ctx.status(order)

    def _common_reason(self, acct: _Account, spec: PairSpec, cid: str | None) -> str | None:
        if not spec.active:
            return REASON_PAIR_INACTIVE
        if cid is not None:
            for o in acct.by_cid.get(cid, ()):
                if o.is_open:
                    return REASON_DUPLICATE_CID
        return None

    @staticmethod
    def _min_size_reason(spec: PairSpec) -> str:
        # Detail format follows CCXT's example "Minimum order size not met . Minimum amount:
        # 1 USDT, minimum total: 10 ZAR". [C-code]
        return (
            f"{REASON_MIN_SIZE} . Minimum amount: {spec.min_base} {spec.base}, "
            f"minimum total: {spec.min_quote} {spec.quote}"
        )

    def _plan(
        self,
        book: OrderBook,
        account: str,
        side: Side,
        limit_price: Decimal | None,
        base_left: Decimal | None,
        quote_left: Decimal | None,
        base_decimals: int,
    ) -> tuple[list[tuple[Order, Decimal]], list[Order]]:
        """Walk the opposite side: the fills an incoming order would get, and the same
        account's resting orders it would meet (self-trade prevention cancels those)."""
        fills: list[tuple[Order, Decimal]] = []
        self_hits: list[Order] = []
        if limit_price is not None:
            # the common case, an order that does not cross: the walk would stop at the best price
            best = book.best_price(side.opposite)
            if best is None or (best > limit_price if side is Side.BUY else best < limit_price):
                return fills, self_hits
        for maker in book.iter_orders(side.opposite):
            maker_price = maker.resting_price
            if limit_price is not None:
                if side is Side.BUY and maker_price > limit_price:
                    break
                if side is Side.SELL and maker_price < limit_price:
                    break
            if (base_left is not None and base_left <= 0) or (quote_left is not None and quote_left <= 0):
                break
            if maker.account == account:
                self_hits.append(maker)
                continue
            q = maker.remaining_quantity
            if base_left is not None:
                q = min(q, base_left)
                base_left -= q
            if quote_left is not None:
                q = min(q, _floor_to(quote_left / maker_price, base_decimals))
                if q <= 0:
                    break
                quote_left -= q * maker_price
            fills.append((maker, q))
        return fills, self_hits

    def _process_limit(self, ctx: _Ctx, cmd: _Command) -> None:
        req: LimitRequest = cmd.req  # type: ignore[assignment]
        spec = self.pairs[req.pair]
        acct = self._accounts[cmd.account]
        book = self._books[req.pair]
        order = self._new_order(cmd, ctx.ts)
        reason = self._common_reason(acct, spec, req.customer_order_id)
        cost = req.price * req.quantity
        if reason is None and req.price % spec.tick_size != 0:
            reason = f"{REASON_TICK} {spec.tick_size}"
        if reason is None and _has_more_decimals(req.quantity, spec.base_decimals):
            reason = REASON_DECIMALS
        if reason is None and (req.quantity < spec.min_base or cost < spec.min_quote):
            reason = self._min_size_reason(spec)
        if reason is None and (req.quantity > spec.max_base or cost > spec.max_quote):
            reason = REASON_MAX_SIZE
        spend_cur, reserve = (spec.quote, cost) if req.side is Side.BUY else (spec.base, req.quantity)
        if reason is None and acct.bal(spend_cur)[0] < reserve:
            reason = REASON_INSUFFICIENT_BALANCE
        fills: list[tuple[Order, Decimal]] = []
        self_hits: list[Order] = []
        if reason is None:
            if req.post_only:
                # Any order at a crossing price, the account's own included, makes a post-only fail.
                best = book.best_price(req.side.opposite)
                if best is not None and (best <= req.price if req.side is Side.BUY else best >= req.price):
                    reason = REASON_POST_ONLY
            else:
                fills, self_hits = self._plan(
                    book, cmd.account, req.side, req.price, req.quantity, None, spec.base_decimals
                )
                if req.time_in_force is TimeInForce.FOK and sum((q for _, q in fills), ZERO) < req.quantity:
                    reason = REASON_FOK
        if reason is not None:
            self._fail(ctx, order, reason)
            return

        self._accept_and_match(ctx, order, spend_cur, reserve, self_hits, fills, spec, report_placed=True)
        if order.remaining_quantity > 0:
            if req.time_in_force is TimeInForce.GTC:
                book.add(order, ctx.ts)
                acct.open[order.order_id] = order
                ctx.open_changed[cmd.account] = None
                ctx.books[req.pair] = None
            else:
                # IOC remainder (FOK never gets here with a remainder): cancelled.
                self._close(ctx, order, OrderStatus.CANCELLED)
                ctx.status(order)
        elif fills:
            self._accounts[cmd.account].remember_closed(order)

    def _accept_and_match(self, ctx: _Ctx, order: Order, spend_cur: str, reserve: Decimal,
                          self_hits: list[Order], fills: list[tuple[Order, Decimal]], spec: PairSpec,
                          *, report_placed: bool) -> None:
        """An order passed validation: reserve its funds, report it, clear self-trades, fill."""
        self._remember(order)
        order.reserved = reserve
        ctx.move(order.account, spend_cur, -reserve, reserve)
        ctx.add(OrderProcessed(ctx.ts, order.account, order.order_id, order.customer_order_id, True))
        if report_placed:
            ctx.status(order)
        for resting in self_hits:
            self._cancel_order(ctx, resting, REASON_SELF_TRADE)
        for maker, q in fills:
            self._fill(ctx, order, maker, q, spec)

    def _process_market(self, ctx: _Ctx, cmd: _Command) -> None:
        req: MarketRequest = cmd.req  # type: ignore[assignment]
        spec = self.pairs[req.pair]
        acct = self._accounts[cmd.account]
        book = self._books[req.pair]
        order = self._new_order(cmd, ctx.ts)
        reason = self._common_reason(acct, spec, req.customer_order_id)
        if reason is None and req.base_amount is not None:
            if _has_more_decimals(req.base_amount, spec.base_decimals):
                reason = REASON_DECIMALS
            elif req.base_amount < spec.min_base:
                reason = self._min_size_reason(spec)
            elif req.base_amount > spec.max_base:
                reason = REASON_MAX_SIZE
        if reason is None and req.quote_amount is not None:
            if req.quote_amount < spec.min_quote:
                reason = self._min_size_reason(spec)
            elif req.quote_amount > spec.max_quote:
                reason = REASON_MAX_SIZE
        fills: list[tuple[Order, Decimal]] = []
        self_hits: list[Order] = []
        spend_cur = spec.quote if req.side is Side.BUY else spec.base
        reserve = ZERO
        if reason is None:
            fills, self_hits = self._plan(
                book, cmd.account, req.side, None, req.base_amount, req.quote_amount, spec.base_decimals
            )
            planned_base = sum((q for _, q in fills), ZERO)
            planned_quote = sum((m.resting_price * q for m, q in fills), ZERO)
            if req.side is Side.BUY:
                reserve = req.quote_amount if req.quote_amount is not None else planned_quote
            else:
                reserve = req.base_amount if req.base_amount is not None else planned_base
            if acct.bal(spend_cur)[0] < reserve:
                reason = REASON_INSUFFICIENT_BALANCE
            elif not fills:
                reason = REASON_NO_LIQUIDITY
            if req.base_amount is None:
                order.original_quantity = order.remaining_quantity = planned_base
        if reason is not None:
            self._fail(ctx, order, reason)
            return

        # [INF] No "Placed" status for a market order: it never rests.
        self._accept_and_match(ctx, order, spend_cur, reserve, self_hits, fills, spec, report_placed=False)
        if order.remaining_quantity > 0:
            # Not enough liquidity for the whole amount: the remainder is cancelled. [INF]
            self._close(ctx, order, OrderStatus.CANCELLED)
            ctx.status(order)
        else:
            self._release(ctx, order)
            acct.remember_closed(order)

    # --- stop-limit orders ------------------------------------------------------------------
    def _limit_reason(self, acct: _Account, spec: PairSpec, side: Side, price: Decimal, quantity: Decimal,
                      cid: str | None, reserved: Decimal = ZERO) -> str | None:
        """The checks a limit order meets at processing time (``reserved``: funds the order
        already holds, counted as available: a modification)."""
        reason = self._common_reason(acct, spec, cid)
        cost = price * quantity
        if reason is None and price % spec.tick_size != 0:
            reason = f"{REASON_TICK} {spec.tick_size}"
        if reason is None and _has_more_decimals(quantity, spec.base_decimals):
            reason = REASON_DECIMALS
        if reason is None and (quantity < spec.min_base or cost < spec.min_quote):
            reason = self._min_size_reason(spec)
        if reason is None and (quantity > spec.max_base or cost > spec.max_quote):
            reason = REASON_MAX_SIZE
        spend_cur, reserve = (spec.quote, cost) if side is Side.BUY else (spec.base, quantity)
        if reason is None and acct.bal(spend_cur)[0] + reserved < reserve:
            reason = REASON_INSUFFICIENT_BALANCE
        return reason

    @staticmethod
    def _stop_reached(order: Order, last: Decimal) -> bool:
        """[INF] the usual semantics: a stop loss sells when the price falls to the stop (buys when
        it rises to it); a take profit sells when it rises to the stop (buys when it falls to it)."""
        stop = order.stop_price
        if stop is None:
            return False
        falls_to = last <= stop
        rises_to = last >= stop
        if order.order_type is OrderType.STOP_LOSS_LIMIT:
            return falls_to if order.side is Side.SELL else rises_to
        return rises_to if order.side is Side.SELL else falls_to

    def _process_stop(self, ctx: _Ctx, cmd: _Command) -> None:
        """A stop-limit order: validated like a limit order, funds reserved, then "Active" (off the
        book, listed among the open orders [INF]) until the last traded price reaches its stop."""
        req: StopLimitRequest = cmd.req  # type: ignore[assignment]
        spec = self.pairs[req.pair]
        acct = self._accounts[cmd.account]
        order = self._new_order(cmd, ctx.ts)
        reason = self._limit_reason(acct, spec, req.side, req.price, req.quantity, req.customer_order_id)
        last = self._stats[req.pair].last_price
        if reason is None and last is not None and self._stop_reached(order, last):
            reason = REASON_STOP_IMMEDIATE
        if reason is not None:
            self._fail(ctx, order, reason)
            return
        spend_cur, reserve = ((spec.quote, req.price * req.quantity) if req.side is Side.BUY
                              else (spec.base, req.quantity))
        self._accept_and_match(ctx, order, spend_cur, reserve, [], [], spec, report_placed=True)
        acct.open[order.order_id] = order
        self._stops[req.pair][order.order_id] = order
        ctx.open_changed[cmd.account] = None

    def _trigger_stops(self, ctx: _Ctx) -> None:
        """Stop orders whose trigger the trades of this command reached become limit orders
        ("Placed", orderType unchanged [C-off Postman "Triggered Stop Order"]) and match at once;
        their own trades may trigger further stops."""
        if not ctx.public:  # no trades, nothing triggered
            return
        done: set[str] = set()
        while True:
            pairs = {t.trade.pair for t in ctx.public}
            triggered = []
            for pair in sorted(pairs):
                last = self._stats[pair].last_price
                if last is None:
                    continue
                for order in sorted(self._stops[pair].values(), key=lambda o: o.seq):
                    if order.order_id not in done and self._stop_reached(order, last):
                        triggered.append(order)
            if not triggered:
                return
            for order in triggered:
                done.add(order.order_id)
                self._stops[order.pair].pop(order.order_id, None)
                self._activate(ctx, order)

    def _activate(self, ctx: _Ctx, order: Order) -> None:
        """A triggered stop order, as a limit order (funds already reserved): match, then rest."""
        spec = self.pairs[order.pair]
        book = self._books[order.pair]
        order.status = OrderStatus.PLACED
        order.updated_ms = ctx.ts
        order.touch()
        ctx.status(order)
        fills, self_hits = self._plan(book, order.account, order.side, order.price, order.remaining_quantity,
                                      None, spec.base_decimals)
        for resting in self_hits:
            self._cancel_order(ctx, resting, REASON_SELF_TRADE)
        for maker, q in fills:
            self._fill(ctx, order, maker, q, spec)
        self._rest_or_close(ctx, order, fills)

    def _rest_or_close(self, ctx: _Ctx, order: Order, fills: list) -> None:
        """After matching: a GTC remainder rests in the book, an IOC/FOK remainder is cancelled, a
        filled order is closed."""
        acct = self._accounts[order.account]
        if order.remaining_quantity > 0:
            if order.time_in_force is TimeInForce.GTC:
                self._books[order.pair].add(order, ctx.ts)
                acct.open[order.order_id] = order
                ctx.open_changed[order.account] = None
                ctx.books[order.pair] = None
            else:
                self._close(ctx, order, OrderStatus.CANCELLED)
                ctx.status(order)
        else:
            if acct.open.pop(order.order_id, None) is not None:
                ctx.open_changed[order.account] = None
            self._release(ctx, order)
            acct.remember_closed(order)

    # --- modifications ------------------------------------------------------------------------
    def _process_modify(self, ctx: _Ctx, cmd: _Command) -> None:
        """Apply a modification [C-off Postman "Modify Order V1": price, total or remaining quantity
        of an open limit order; a lower quantity keeps the order's place in the queue, a higher one
        or a new price sends it to the back]. What cannot be applied fails the modification; the
        order then stays (RETAIN_ORIGINAL, REPRICE) or is cancelled (CANCEL_ORIGINAL). A post-only
        order that would match fails, or with REPRICE moves one tick off the other side; any other
        limit order that would match trades at once as a taker [INF]."""
        req: ModifyRequest = cmd.req  # type: ignore[assignment]
        acct = self._accounts[cmd.account]
        request_id = cmd.request_id or ""
        if req.order_id is not None:
            order = acct.orders.get(req.order_id)
            if order is not None and order.pair != req.pair:
                order = None
        else:
            order = self._by_cid(acct, req.customer_order_id or "", req.pair)

        def fail(reason: str) -> None:
            if order is not None and order.is_open and req.strategy is ModifyMatchStrategy.CANCEL_ORIGINAL:
                self._cancel_order(ctx, order)
            view = order.view() if order is not None else None
            if view is None:
                # [INF] nothing to describe: an empty view naming what the request named
                view = OrderView(order_id=req.order_id or cmd.order_id or "", account=cmd.account, pair=req.pair,
                                 side=Side.BUY, order_type=OrderType.LIMIT, time_in_force=TimeInForce.GTC,
                                 price=None, original_quantity=ZERO, remaining_quantity=ZERO,
                                 status=OrderStatus.FAILED, created_ms=ctx.ts, updated_ms=ctx.ts,
                                 customer_order_id=req.customer_order_id)
            ctx.add(OrderModified(ctx.ts, cmd.account, view, request_id, False, reason))

        if order is None:
            fail(CANCEL_NOT_FOUND)
            return
        if not order.is_open or order.order_type not in (OrderType.LIMIT, OrderType.POST_ONLY_LIMIT):
            fail(REASON_MODIFY_NOT_OPEN)
            return
        spec = self.pairs[order.pair]
        book = self._books[order.pair]
        filled = order.filled_quantity
        price = req.new_price if req.new_price is not None else order.resting_price
        if req.new_total is not None:
            if req.new_total <= filled:
                # "If newTotalQuantity is less than the filled quantity, the order is canceled."
                self._cancel_order(ctx, order)
                ctx.add(OrderModified(ctx.ts, cmd.account, order.view(), request_id, True))
                return
            remaining = req.new_total - filled
        elif req.new_remaining is not None:
            remaining = req.new_remaining
        else:
            remaining = order.remaining_quantity
        if price == order.price and remaining == order.remaining_quantity:
            fail(REASON_MODIFY_NOTHING)
            return
        opposite = book.best_price(order.side.opposite)

        def crosses(p: Decimal) -> bool:
            return opposite is not None and (opposite <= p if order.side is Side.BUY else opposite >= p)

        post_only = order.order_type is OrderType.POST_ONLY_LIMIT
        if post_only and crosses(price):
            if req.strategy is not ModifyMatchStrategy.REPRICE or opposite is None:
                fail(REASON_POST_ONLY)
                return
            price = opposite - spec.tick_size if order.side is Side.BUY else opposite + spec.tick_size
        # The order's own reservation counts as available for its new size.
        reason = self._limit_reason(acct, spec, order.side, price, remaining, None, order.reserved)
        if reason is not None:
            fail(reason)
            return
        spend_cur = spec.quote if order.side is Side.BUY else spec.base
        reserve = price * remaining if order.side is Side.BUY else remaining
        to_back = price != order.price or remaining > order.remaining_quantity
        if to_back:
            book.remove(order, ctx.ts)
        else:
            book.quantity_changed(ctx.ts)
        ctx.books[order.pair] = None
        ctx.move(order.account, spend_cur, order.reserved - reserve, reserve - order.reserved)
        order.reserved = reserve
        order.price = price
        order.remaining_quantity = remaining
        order.original_quantity = filled + remaining
        order.updated_ms = ctx.ts
        order.touch()
        ctx.open_changed[order.account] = None
        ctx.add(OrderModified(ctx.ts, cmd.account, order.view(), request_id, True))
        if not to_back:
            return
        fills: list[tuple[Order, Decimal]] = []
        if crosses(price):
            fills, self_hits = self._plan(book, order.account, order.side, price, remaining, None,
                                          spec.base_decimals)
            for resting in self_hits:
                self._cancel_order(ctx, resting, REASON_SELF_TRADE)
            for maker, q in fills:
                self._fill(ctx, order, maker, q, spec)
        self._rest_or_close(ctx, order, fills)

    # --- fills ----------------------------------------------------------------------------
    def _fill(self, ctx: _Ctx, taker: Order, maker: Order, qty: Decimal, spec: PairSpec) -> None:
        price = maker.resting_price
        quote = price * qty
        buyer, seller = (taker, maker) if taker.side is Side.BUY else (maker, taker)
        # Fees are charged in the currency each side receives (buyer: base, seller: quote),
        # as VALR's NEW_ACCOUNT_HISTORY_RECORD shows feeValue in the credit currency. [C-off VP example]
        buyer_rate = spec.taker_fee if buyer is taker else spec.maker_fee
        seller_rate = spec.taker_fee if seller is taker else spec.maker_fee
        buyer_fee = qty * buyer_rate
        seller_fee = quote * seller_rate
        # Buyer: its reservation is at its own rate (limit price), or actual cost for a market buy.
        buyer_release = quote if buyer.price is None else buyer.price * qty
        buyer_release = min(buyer_release, buyer.reserved)
        buyer.reserved -= buyer_release
        ctx.move(buyer.account, spec.quote, buyer_release - quote, -buyer_release)
        ctx.move(buyer.account, spec.base, qty - buyer_fee, ZERO)
        seller.reserved -= qty
        ctx.move(seller.account, spec.base, ZERO, -qty)
        ctx.move(seller.account, spec.quote, quote - seller_fee, ZERO)

        for o, fee in ((buyer, buyer_fee), (seller, seller_fee)):
            o.remaining_quantity -= qty
            o.filled_quantity += qty
            o.filled_quote += quote
            o.fee_paid += fee
            o.updated_ms = ctx.ts
            o.status = OrderStatus.FILLED if o.remaining_quantity == 0 else OrderStatus.PARTIALLY_FILLED
            o.touch()

        book = self._books[spec.symbol]
        if maker.remaining_quantity == 0:
            book.remove(maker, ctx.ts)
            self._release(ctx, maker)  # rounding dust, if any
            acct = self._accounts[maker.account]
            acct.open.pop(maker.order_id, None)
            acct.remember_closed(maker)
        else:
            book.quantity_changed(ctx.ts)
        ctx.open_changed[maker.account] = None
        ctx.books[spec.symbol] = None

        self._trade_seq[spec.symbol] += 1
        trade = Trade(
            trade_id=self._new_id(), sequence=self._trade_seq[spec.symbol], pair=spec.symbol,
            price=price, quantity=qty, taker_side=taker.side, ts_ms=ctx.ts,
            maker_order_id=maker.order_id, taker_order_id=taker.order_id,
            maker_account=maker.account, taker_account=taker.account,
        )  # fmt: skip
        self._record_trade(trade)
        for o, is_maker in ((taker, False), (maker, True)):
            fee, fee_cur = (buyer_fee, spec.base) if o is buyer else (seller_fee, spec.quote)
            ctx.add(AccountTrade(ctx.ts, o.account, trade, o.view(), o.side.value, is_maker, fee, fee_cur,
                                 self._new_id()))
            ctx.emit_balance(o.account, spec.base)
            ctx.emit_balance(o.account, spec.quote)
            ctx.status(o)
        ctx.public.append(PublicTrade(ctx.ts, trade))

    def _record_trade(self, trade: Trade) -> None:
        st = self._stats[trade.pair]
        if st.first_price is None:
            st.first_price = trade.price
        st.last_price = trade.price
        st.high = trade.price if st.high is None else max(st.high, trade.price)
        st.low = trade.price if st.low is None else min(st.low, trade.price)
        st.base_volume += trade.quantity
        st.quote_volume += trade.quantity * trade.price
        st.last_ms = max(st.last_ms, trade.ts_ms)
        self._trades[trade.pair].append(trade)

    # --- cancel ---------------------------------------------------------------------------
    def _release(self, ctx: _Ctx, order: Order) -> None:
        if order.reserved:
            spec = self.pairs[order.pair]
            cur = spec.quote if order.side is Side.BUY else spec.base
            ctx.move(order.account, cur, order.reserved, -order.reserved)
            order.reserved = ZERO

    def _close(self, ctx: _Ctx, order: Order, status: OrderStatus, reason: str = "") -> None:
        order.status = status
        order.failed_reason = reason
        order.updated_ms = ctx.ts
        order.touch()
        self._release(ctx, order)
        self._stops[order.pair].pop(order.order_id, None)
        acct = self._accounts[order.account]
        if acct.open.pop(order.order_id, None) is not None:
            ctx.open_changed[order.account] = None
        acct.remember_closed(order)

    def _cancel_order(self, ctx: _Ctx, order: Order, reason: str = "") -> None:
        book = self._books[order.pair]
        if order.order_id in book:
            book.remove(order, ctx.ts)
            ctx.books[order.pair] = None
        self._close(ctx, order, OrderStatus.CANCELLED, reason)
        ctx.status(order)

    def _process_cancel(self, ctx: _Ctx, cmd: _Command) -> None:
        req: CancelRequest = cmd.req  # type: ignore[assignment]
        acct = self._accounts[cmd.account]
        if req.order_id is not None:
            order = acct.orders.get(req.order_id)
            if order is not None and order.pair != req.pair:
                order = None
        elif req.customer_order_id is not None:
            order = self._by_cid(acct, req.customer_order_id, req.pair)
        else:  # cannot happen: submit_cancel refuses a request naming no order
            order = None
        if order is None:
            message = CANCEL_NOT_FOUND
        elif not order.is_open:
            message = CANCEL_ALREADY_CLOSED
        else:
            self._cancel_order(ctx, order)
            return
        ctx.add(CancelFailed(ctx.ts, cmd.account, req.order_id or cmd.order_id, req.customer_order_id, message))

    # --- queries --------------------------------------------------------------------------
    @staticmethod
    def _by_cid(acct: _Account, cid: str, pair: str | None) -> Order | None:
        candidates = [o for o in acct.by_cid.get(cid, ()) if pair is None or o.pair == pair]
        for o in candidates:
            if o.is_open:
                return o
        return max(candidates, key=lambda o: o.seq) if candidates else None

    def open_orders(self, account: str, pair: str | None = None) -> list[OrderView]:
        acct = self._account(account)
        return [v for v in acct.open_views() if pair is None or v.pair == pair]

    def find_order(
        self,
        account: str,
        pair: str | None = None,
        order_id: str | None = None,
        customer_order_id: str | None = None,
    ) -> OrderView | None:
        acct = self._account(account)
        if order_id is not None:
            o = acct.orders.get(order_id)
            if o is None or (pair is not None and o.pair != pair):
                return None
            return o.view()
        if customer_order_id is not None:
            o = self._by_cid(acct, customer_order_id, pair)
            return o.view() if o is not None else None
        return None

    def order_history(self, account: str, skip: int = 0, limit: int = 100) -> list[OrderView]:
        acct = self._account(account)
        start = max(skip, 0)
        newest_first = itertools.islice(reversed(acct.closed.values()), start, start + max(limit, 0))
        return [o.view() for o in newest_first]

    def _balance(self, account: str, currency: str) -> Balance:
        acct = self._accounts[account]
        avail, res = acct.bal(currency)
        return Balance(currency, avail, res, acct.updated_ms.get(currency, 0))

    def balances(self, account: str) -> list[Balance]:
        acct = self._account(account)
        return [self._balance(account, c) for c in sorted(acct.balances)]

    def book(self, pair: str, depth: int = 40) -> BookView:
        self._pair(pair)
        return self._books[pair].view(depth)

    def book_orders(self, pair: str) -> tuple[list, list]:
        """The whole non-aggregated book: (bids, asks), each ``OrderBook.orders_by_level``."""
        self._pair(pair)
        book = self._books[pair]
        return book.orders_by_level(Side.BUY), book.orders_by_level(Side.SELL)

    def book_levels(self, pair: str) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The whole aggregated book: (bids, asks) as ``[(price, quantity), ...]``, best first."""
        self._pair(pair)
        book = self._books[pair]
        depth = len(book) + 1
        return ([(lv.price, lv.quantity) for lv in book.levels(Side.BUY, depth)],
                [(lv.price, lv.quantity) for lv in book.levels(Side.SELL, depth)])

    def market_summary(self, pair: str) -> MarketSummary:
        """Summary since the exchange started ([INF] not a rolling 24 h window): the first
        trade's price stands for the previous close."""
        self._pair(pair)
        book = self._books[pair]
        st = self._stats[pair]
        change = ZERO
        if st.first_price and st.last_price is not None:
            change = ((st.last_price - st.first_price) / st.first_price * 100).quantize(Decimal("0.01"))
        return MarketSummary(
            pair=pair,
            ask_price=book.best_price(Side.SELL),
            bid_price=book.best_price(Side.BUY),
            last_traded_price=st.last_price,
            previous_close_price=st.first_price,
            base_volume=st.base_volume,
            quote_volume=st.quote_volume,
            high_price=st.high,
            low_price=st.low,
            created_ms=max(st.last_ms, book.last_change_ms),
            change_from_previous=change,
        )

    def recent_trades(self, pair: str, limit: int = 100) -> list[Trade]:
        self._pair(pair)
        return list(reversed(self._trades[pair]))[: max(limit, 0)]
