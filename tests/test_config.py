"""Tests of the exchange configuration loader."""

from __future__ import annotations

from decimal import Decimal as D
from pathlib import Path

import pytest

from replay.config import (
    DEFAULT_ROUTE_LIMITS,
    DEMO_API_KEY,
    DEMO_API_SECRET,
    ConfigError,
    ExchangeConfig,
    config_from_dict,
    default_config,
    load_config,
)

SAMPLE = """
[server]
engine_latency_s = 0.005
idle_timeout_s = 30
[server.route_limits_per_second]
"POST /v1/orders" = 10

[[pairs]]
symbol = "BTCZAR"
base = "BTC"
quote = "ZAR"
tick_size = "1"
min_base = "0.0001"
max_base = 4
min_quote = "10"
maker_fee = "-0.0001"

[[pairs]]
symbol = "SOLZAR"
base = "SOL"
quote = "ZAR"
tick_size = 0.01
min_base = "0.01"
min_quote = 10
base_decimals = 4

[[accounts]]
name = "alice"
api_key = "k1"
api_secret = "s1"
subaccounts = ["sub1"]
[accounts.balances]
BTC = "1.5"
ZAR = 100000

[[accounts]]
name = "bob"
api_key = "k2"
api_secret = "s2"

[market.SOLZAR]
mid = "3000.5"
levels = 4
taker_probability = 0.5
"""


def write(tmp_path: Path, text: str, name: str = "exchange.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_default_config():
    cfg = default_config()
    assert isinstance(cfg, ExchangeConfig)
    demo = cfg.account("demo")
    assert demo.api_key == DEMO_API_KEY and demo.api_secret == DEMO_API_SECRET
    assert demo.balances == {"BTC": D("10"), "ETH": D("100"), "ZAR": D("10000000")}
    btc = cfg.pair("BTCZAR")
    assert (btc.tick_size, btc.min_base, btc.max_base, btc.min_quote) == (D(1), D("0.0001"), D(4), D(10))
    eth = cfg.pair("ETHZAR")
    assert (eth.tick_size, eth.min_base, eth.min_quote) == (D(1), D("0.001"), D(10))
    assert cfg.market["BTCZAR"].mid == D("1500000") and cfg.market["ETHZAR"].mid == D("60000")
    assert cfg.server.route_limits_per_second == DEFAULT_ROUTE_LIMITS
    assert cfg.server.rate_limit_per_minute_key == 2000 and cfg.server.idle_timeout_s is None
    # Independent copies.
    default_config().server.route_limits_per_second["x"] = 1
    assert "x" not in default_config().server.route_limits_per_second


def test_load_sample(tmp_path):
    cfg = load_config(write(tmp_path, SAMPLE))
    assert cfg.source.endswith("exchange.toml")
    assert [p.symbol for p in cfg.pairs] == ["BTCZAR", "SOLZAR"]
    btc, sol = cfg.pairs
    assert btc.max_base == D(4) and btc.maker_fee == D("-0.0001") and btc.taker_fee == D("0.001")
    assert sol.tick_size == D("0.01") and sol.min_quote == D(10) and sol.base_decimals == 4
    alice, bob = cfg.accounts
    assert alice.balances == {"BTC": D("1.5"), "ZAR": D(100000)} and alice.subaccounts == ["sub1"]
    assert bob.balances == {} and bob.subaccounts == []
    assert list(cfg.market) == ["SOLZAR"]
    m = cfg.market["SOLZAR"]
    assert m.mid == D("3000.5") and m.levels == 4 and m.taker_probability == 0.5 and m.spread_bps == D(30)
    assert cfg.server.engine_latency_s == 0.005 and cfg.server.idle_timeout_s == 30.0
    assert cfg.server.route_limits_per_second["POST /v1/orders"] == 10
    assert cfg.server.route_limits_per_second["DELETE /v1/orders"] == 450


def test_omitted_sections_take_defaults(tmp_path):
    cfg = load_config(write(tmp_path, "[server]\nmax_frame_bytes = 1024\n"))
    assert cfg.server.max_frame_bytes == 1024
    assert [p.symbol for p in cfg.pairs] == ["BTCZAR", "ETHZAR"]
    assert [a.name for a in cfg.accounts] == ["demo"]
    assert set(cfg.market) == {"BTCZAR", "ETHZAR"}
    # Custom pairs without [market]: defaults only for the pairs that have them.
    only_sol = config_from_dict(
        {"pairs": [{"symbol": "SOLZAR", "base": "SOL", "quote": "ZAR", "tick_size": "1", "min_base": "1",
                    "min_quote": "1"}]},
        "scenario.toml",
    )
    assert only_sol.market == {}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[server]\nbogus = 1\n", "server.bogus: unknown key"),
        ("surprise = 1\n", "surprise: unknown key"),
        ("[server]\nmax_frame_bytes = \"big\"\n", "server.max_frame_bytes: expected an integer, got a string"),
        ("[server]\nengine_latency_s = -1\n", "server.engine_latency_s: must be at least 0"),
        ("[server]\nrate_limit_per_minute_ip = true\n", "server.rate_limit_per_minute_ip: expected an integer"),
        ("[[pairs]]\nsymbol = \"BTCZAR\"\nbase = \"BTC\"\nquote = \"ZAR\"\ntick_size = \"1\"\nmin_base = \"0.1\"\n",
         "pairs[0].min_quote: missing required key"),
        ("[[pairs]]\nsymbol = \"BTCZAR\"\nbase = \"BTC\"\nquote = \"ZAR\"\ntick_size = \"abc\"\n"
         "min_base = \"0.1\"\nmin_quote = 1\n",
         "pairs[0].tick_size: not a decimal number"),
        ("[[pairs]]\nsymbol = \"BTCZAR\"\nbase = \"BTC\"\nquote = \"ZAR\"\ntick_size = 0\n"
         "min_base = \"0.1\"\nmin_quote = 1\n",
         "pairs[0].tick_size: must be positive"),
        ("[[accounts]]\nname = \"a\"\napi_key = \"k\"\n", "accounts[0].api_secret: missing required key"),
        ("[[accounts]]\nname = \"a\"\napi_key = \"k\"\napi_secret = \"s\"\n[accounts.balances]\nBTC = \"-1\"\n",
         "accounts[0].balances.BTC: must not be negative"),
        ("[[accounts]]\nname = \"a\"\napi_key = \"k\"\napi_secret = \"s\"\n"
         "[[accounts]]\nname = \"a\"\napi_key = \"k2\"\napi_secret = \"s\"\n",
         "accounts[1].name: duplicate account name"),
        ("[market.BTCZAR]\nlevels = 3\n", "market.BTCZAR.mid: missing required key"),
        ("[market.DOGEZAR]\nmid = 1\n", "market.DOGEZAR: no such pair"),
        ("[market.BTCZAR]\nmid = 1\ntaker_probability = 2\n", "market.BTCZAR.taker_probability: must be at most 1"),
        ("[market.BTCZAR]\nmid = 1\nspred_bps = 2\n", "market.BTCZAR.spred_bps: unknown key"),
        ("pairs = 3\n", "pairs: expected an array of tables"),
    ],
)
def test_config_errors_name_file_and_key(tmp_path, text, expected):
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert msg.startswith(f"{path}: "), msg
    assert expected in msg, msg


def test_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "[server]\nengine_latency_s = 0.1\nmax_frame_bytes = = 3\n", "syntax.toml")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: TOML syntax error")
    assert "line 3" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: cannot read"):
        load_config(tmp_path / "nope.toml")


def test_config_from_dict_uses_source_in_errors():
    with pytest.raises(ConfigError, match=r"^scenario\.toml: server\.idle_timeout_s: expected a number"):
        config_from_dict({"server": {"idle_timeout_s": "soon"}}, "scenario.toml")


def test_config_drives_an_exchange(tmp_path):
    from replay.exchange import Exchange
    from replay.exchange.model import LimitRequest, Side

    cfg = load_config(write(tmp_path, SAMPLE))
    ex = Exchange(cfg.pairs)
    for a in cfg.accounts:
        ex.open_account(a.name, a.balances)
    _, ev = ex.place_limit(1, "alice", LimitRequest("SOLZAR", Side.BUY, D("1.5"), D("2999.99")))
    assert ev[0].success  # tick 0.01
    _, ev = ex.place_limit(2, "alice", LimitRequest("SOLZAR", Side.BUY, D("1.5"), D("2999.995")))
    assert not ev[0].success and "tick" in ev[0].failure_reason
    _, ev = ex.place_limit(3, "alice", LimitRequest("SOLZAR", Side.BUY, D("1.23456"), D("2999")))
    assert not ev[0].success and "decimal places" in ev[0].failure_reason  # base_decimals = 4
    _, ev = ex.place_limit(4, "bob", LimitRequest("SOLZAR", Side.BUY, D("1"), D("2999")))
    assert ev[0].failure_reason == "Insufficient Balance"  # bob has no balances
