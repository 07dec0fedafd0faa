"""VALR constants.

The three base URLs are module attributes that every other module reads *when it builds a URL*
(``CONSTANTS.REST_URL``, never a copy taken at import or construction time), so that a test or
a harness can point the connector elsewhere by assigning them before the connector is built.
"""

from hummingbot.core.api_throttler.data_types import LinkedLimitWeightPair, RateLimit
from hummingbot.core.data_type.in_flight_order import OrderState

EXCHANGE_NAME = "valr"
DEFAULT_DOMAIN = "com"

REST_URL = "https://api.valr.com"
WSS_ACCOUNT_URL = "wss://api.valr.com/ws/account"
WSS_TRADE_URL = "wss://api.valr.com/ws/trade"

# customerOrderId: letters, digits and dashes, at most 50 characters
HBOT_ORDER_ID_PREFIX = "HBOT-"
MAX_ORDER_ID_LEN = 36

# --- REST paths ---------------------------------------------------------------------------------
SERVER_TIME_PATH_URL = "/v1/public/time"
STATUS_PATH_URL = "/v1/public/status"
PAIRS_PATH_URL = "/v1/public/pairs"
ORDER_BOOK_PATH_URL = "/v1/public/{}/orderbook"
MARKET_SUMMARY_PATH_URL = "/v1/public/{}/marketsummary"
BALANCES_PATH_URL = "/v1/account/balances"
TRADE_HISTORY_PATH_URL = "/v1/account/{}/tradehistory"
PLACE_LIMIT_PATH_URL = "/v1/orders/limit"
CANCEL_ORDER_PATH_URL = "/v1/orders/order"
ORDER_STATUS_BY_CID_PATH_URL = "/v1/orders/{}/customerorderid/{}"

# throttler ids for the parametrised paths
ORDER_BOOK_LIMIT_ID = "orderbook"
MARKET_SUMMARY_LIMIT_ID = "marketsummary"
TRADE_HISTORY_LIMIT_ID = "tradehistory"
ORDER_STATUS_LIMIT_ID = "orderstatus"

TRADE_HISTORY_LIMIT = 100  # fills per page asked for

# --- WebSockets -----------------------------------------------------------------------------------
WS_HEARTBEAT_TIME_INTERVAL = 30.0  # protocol-level ping (aiohttp heartbeat)
WS_PING_INTERVAL = 20.0  # VALR's application-level {"type": "PING"}
WS_ORDER_TIMEOUT = 1.0  # seconds to wait for a PLACE/CANCEL reply before falling back to REST

# trade stream
WS_ORDER_BOOK_EVENT = "AGGREGATED_ORDERBOOK_UPDATE"  # a whole top-of-book snapshot per message
WS_TRADE_EVENT = "NEW_TRADE"

# account stream: events
ORDER_STATUS_UPDATE = "ORDER_STATUS_UPDATE"
ORDER_PROCESSED = "ORDER_PROCESSED"
FAILED_ORDER = "FAILED_ORDER"
FAILED_CANCEL_ORDER = "FAILED_CANCEL_ORDER"
NEW_ACCOUNT_TRADE = "NEW_ACCOUNT_TRADE"
BALANCE_UPDATE = "BALANCE_UPDATE"
OPEN_ORDERS_UPDATE = "OPEN_ORDERS_UPDATE"
AUTHENTICATED = "AUTHENTICATED"
PONG = "PONG"

# account stream: commands and their replies
PLACE_LIMIT_ORDER = "PLACE_LIMIT_ORDER"
CANCEL_LIMIT_ORDER = "CANCEL_LIMIT_ORDER"
PLACE_LIMIT_WS_RESPONSE = "PLACE_LIMIT_WS_RESPONSE"
CANCEL_ORDER_WS_RESPONSE = "CANCEL_ORDER_WS_RESPONSE"
INVALID_PLACE_LIMIT_REQUEST = "INVALID_PLACE_LIMIT_REQUEST"
INVALID_CANCEL_ORDER_REQUEST = "INVALID_CANCEL_ORDER_REQUEST"
COMMAND_REPLY_TYPES = {
    PLACE_LIMIT_ORDER: (PLACE_LIMIT_WS_RESPONSE, INVALID_PLACE_LIMIT_REQUEST),
    CANCEL_LIMIT_ORDER: (CANCEL_ORDER_WS_RESPONSE, INVALID_CANCEL_ORDER_REQUEST),
}

# --- order states ---------------------------------------------------------------------------------
ORDER_STATE = {
    "Placed": OrderState.OPEN,
    "Partially Filled": OrderState.PARTIALLY_FILLED,
    "PartiallyFilled": OrderState.PARTIALLY_FILLED,
    "Filled": OrderState.FILLED,
    "Cancelled": OrderState.CANCELED,
    "Expired": OrderState.CANCELED,
    "Failed": OrderState.FAILED,
}

# --- errors ---------------------------------------------------------------------------------------
ORDER_NOT_FOUND_CODE = -1
ORDER_NOT_FOUND_MESSAGE = "Invalid Order"  # VALR: {"code":-1,"message":"Invalid Order. "}
DUPLICATE_CID_CODE = -11502
DUPLICATE_CID_MESSAGE = "Duplicate customer order id"
TIMESTAMP_ERROR_MESSAGES = ("Request has expired", "Request timestamp is invalid")

# --- OPEN_ORDERS_UPDATE policies ----------------------------------------------------------------------
OPEN_ORDERS_POLICIES = ("naive", "age-guard:S", "ignore", "reconcile")
RECONCILE_MIN_SNAPSHOTS = 2
RECONCILE_MIN_SECONDS = 1.0

# --- rate limits ----------------------------------------------------------------------------------
# 2000 calls/min per key; POST /v1/orders* 400/s, DELETE 450/s; public time/status 20/s.
ALL_ENDPOINTS_LIMIT = "All"
MINUTE = 60.0
SECOND = 1.0
_ALL = [LinkedLimitWeightPair(ALL_ENDPOINTS_LIMIT)]

RATE_LIMITS = [
    RateLimit(limit_id=ALL_ENDPOINTS_LIMIT, limit=2000, time_interval=MINUTE),
    RateLimit(limit_id=SERVER_TIME_PATH_URL, limit=20, time_interval=SECOND, linked_limits=_ALL),
    RateLimit(limit_id=STATUS_PATH_URL, limit=20, time_interval=SECOND, linked_limits=_ALL),
    RateLimit(limit_id=PAIRS_PATH_URL, limit=20, time_interval=SECOND, linked_limits=_ALL),
    RateLimit(limit_id=ORDER_BOOK_LIMIT_ID, limit=20, time_interval=SECOND, linked_limits=_ALL),
    RateLimit(limit_id=MARKET_SUMMARY_LIMIT_ID, limit=20, time_interval=SECOND, linked_limits=_ALL),
    RateLimit(limit_id=BALANCES_PATH_URL, limit=50, time_interval=SECOND, linked_limits=_ALL),
    RateLimit(limit_id=TRADE_HISTORY_LIMIT_ID, limit=50, time_interval=SECOND, linked_limits=_ALL),
    RateLimit(limit_id=ORDER_STATUS_LIMIT_ID, limit=100, time_interval=SECOND, linked_limits=_ALL),
    RateLimit(limit_id=PLACE_LIMIT_PATH_URL, limit=400, time_interval=SECOND, linked_limits=_ALL),
    RateLimit(limit_id=CANCEL_ORDER_PATH_URL, limit=450, time_interval=SECOND, linked_limits=_ALL),
]

# A command answered RATE_LIMIT_EXCEEDED was not executed: send it again this many times, this long apart.
RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
WS_RATE_LIMIT_RETRIES = 3
WS_RATE_LIMIT_BACKOFF = 1.0
