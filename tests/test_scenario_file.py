"""Scenario files: loading, defaults, and errors that name the file and the key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from replay.latency import SpecError
from replay.scenario import BotSpec, Scenario, ScenarioError, load_scenario, loads_scenario, parse_duration
from replay.schedule import DeliverySchedule, ResendStale

FULL = """
[scenario]
name = "open-orders-race"
description = "A snapshot built before the order reached the book"
duration = "90s"
seed = 7

[exchange]
[exchange.server]
idle_timeout_s = 30

[market]
pairs = ["BTCZAR"]

[latency]
default = "2ms..8ms"
OPEN_ORDERS_UPDATE = "20ms..60ms"
engine = "1ms..3ms"

[[perturb]]
match = { type = "OPEN_ORDERS_UPDATE" }
resend_stale = { after = "6s", probability = 0.1 }

[[perturb]]
name = "ack-behind-snapshot"
match = { type = "PLACE_LIMIT_WS_RESPONSE", nth = [3, 7] }
hold_until = { type = "OPEN_ORDERS_UPDATE", max = "500ms" }

[bot]
connector = "reference"
policy = "naive"
pair = "BTCZAR"
order_refresh_time = "1s"
bid_spread = 0.001
ask_spread = 0.002
order_amount = "0.001"
order_levels = 1
account = "demo"

[expect]
max_open_orders = 2
orphans_at_end = 0
false_cancels = 0
grace = "2s"
place_resolve_within = "5s"
cancel_resolve_within = "4s"
requote_within = "3s"
nothing_open_after_shutdown = true
no_final_state_exit = true
open_orders_slack = 1
place_p99_ms = 250

[expect.policy.naive]
violated = ["max_open_orders", "orphans"]

[expect.policy.age-guard]
violated = ["orphans"]

[expect.policy."age-guard:5s"]
violated = []
"""


def write(tmp_path: Path, text: str, name: str = "s.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_full_file_loads_with_every_field(tmp_path):
    path = write(tmp_path, FULL)
    sc = load_scenario(path)
    assert isinstance(sc, Scenario)
    assert sc.path == path and sc.name == "open-orders-race" and sc.seed == 7
    assert sc.description.startswith("A snapshot")
    assert sc.duration_s == 90.0
    assert sc.exchange == {"server": {"idle_timeout_s": 30}}
    assert sc.market == {"pairs": ["BTCZAR"]}
    assert sc.latency["OPEN_ORDERS_UPDATE"] == "20ms..60ms"
    assert len(sc.perturb) == 2
    assert sc.bot == BotSpec(
        connector="reference", policy="naive", pair="BTCZAR", account="demo", order_refresh_time_s=1.0,
        bid_spread=Decimal("0.001"), ask_spread=Decimal("0.002"), order_amount=Decimal("0.001"), order_levels=1,
        options={},
    )
    assert sc.expect == {
        "max_open_orders": 2, "orphans_at_end": 0, "false_cancels": 0, "grace_s": 2.0, "place_resolve_s": 5.0,
        "cancel_resolve_s": 4.0, "requote_bound_s": 3.0, "nothing_open_after_shutdown": True,
        "final_state_exit": True, "open_orders_slack": 1, "place_p99_ms": 250,
    }
    assert sc.expected_violations.get("naive") == ["max_open_orders", "orphans"]
    assert sc.expected_violations.get("age-guard:5s") == []
    assert sc.expected_violations.get("age-guard:2s") == ["orphans"]  # falls back to the kind
    assert sc.expected_violations.get("reconcile", []) == []


def test_scenario_builds_its_schedule(tmp_path):
    sc = load_scenario(write(tmp_path, FULL))
    s = sc.schedule(start=0.0)
    assert isinstance(s, DeliverySchedule) and s.seed == 7
    assert isinstance(s.perturbations[0], ResendStale)
    assert s.perturbations[1].name == "ack-behind-snapshot"
    assert sc.schedule(seed=9).seed == 9


def test_minimal_file_takes_defaults(tmp_path):
    sc = load_scenario(write(tmp_path, "", "tiny-race.toml"))
    assert sc.name == "tiny-race" and sc.duration_s == 60.0 and sc.seed == 0
    assert sc.exchange is None and sc.latency == {} and sc.perturb == [] and sc.expect == {}
    assert sc.bot == BotSpec()
    assert sc.market == {"pairs": ["BTCZAR"]}


def test_custom_connector_keeps_extras_in_options(tmp_path):
    sc = load_scenario(write(tmp_path, """
[bot]
connector = "mybot.valr:Connector"
policy = "age-guard:1.5s"
transport = "rest"
[bot.options]
verbose = true
"""))
    assert sc.bot.connector == "mybot.valr:Connector"
    assert sc.bot.policy == "age-guard:1.5s"
    assert sc.bot.options == {"verbose": True, "transport": "rest"}


def test_capture_market_and_resolve(tmp_path):
    (tmp_path / "x.jsonl").write_text("", encoding="utf-8")
    sc = load_scenario(write(tmp_path, '[market]\ncapture = "x.jsonl"\n'))
    assert sc.market == {"capture": "x.jsonl"}
    assert sc.resolve(sc.market["capture"]) == tmp_path / "x.jsonl"
    # relative to the scenario file, always (never the current directory)
    assert sc.resolve("captures/none.jsonl") == tmp_path / "captures" / "none.jsonl"


def test_parse_duration_is_exported():
    assert parse_duration("250ms", "k") == 0.25
    with pytest.raises(SpecError, match="^k: "):
        parse_duration("soon", "k")


@pytest.mark.parametrize(
    "text,key,what",
    [
        ("[scenario]\nduration = \"5 minutes\"\n", "scenario.duration", "bad duration"),
        ("[scenario]\nduration = 0\n", "scenario.duration", "more than 0"),
        ("[scenario]\nseed = \"seven\"\n", "scenario.seed", "whole number"),
        ("[scenario]\nnmae = \"x\"\n", "scenario.nmae", "unknown key"),
        ("[scenario]\nname = 3\n", "scenario.name", "string"),
        ("[scenarios]\nname = \"x\"\n", "scenarios", "unknown key"),
        ("scenario = 3\n", "scenario", "expected a table"),
        ("[market]\npairs = \"BTCZAR\"\n", "market.pairs", "list"),
        ("[market]\npairs = [\"BTCZAR\", 4]\n", "market.pairs[1]", "string"),
        ("[market]\nmid = 1\n", "market.mid", "unknown key"),
        ("[latency]\nOPEN_ORDERS_UPDATE = \"soon\"\n", "latency.OPEN_ORDERS_UPDATE", "bad latency"),
        ("[latency]\nlognormal = \"1ms\"\n", "latency.lognormal", "unknown key"),
        ("[[perturb]]\nmatch = { typ = \"OPEN_ORDERS_UPDATE\" }\ndrop = true\n", "perturb[0].match.typ",
         "unknown key"),
        ("[[perturb]]\ndrop = true\n[[perturb]]\nmatch = { type = \"open\" }\ndrop = true\n",
         "perturb[1].match.type", "capitals"),
        ("[[perturb]]\nresend_stale = { after = \"6 secs\" }\n", "perturb[0].resend_stale.after", "bad"),
        ("[[perturb]]\nexplode = true\n", "perturb[0].explode", "unknown key"),
        ("perturb = { drop = true }\n", "perturb", "[[perturb]]"),
        ("[bot]\npolicy = \"yolo\"\n", "bot.policy", "unknown policy"),
        ("[bot]\npolicy = \"age-guard\"\n", "bot.policy", "needs an age"),
        ("[bot]\npolicy = \"age-guard:soon\"\n", "bot.policy", "bad duration"),
        ("[bot]\npolicy = \"ignore:1s\"\n", "bot.policy", "takes no argument"),
        ("[bot]\nconnector = \"mybot\"\n", "bot.connector", "module:attr"),
        ("[bot]\norder_amount = \"lots\"\n", "bot.order_amount", "decimal"),
        ("[bot]\norder_amount = 0\n", "bot.order_amount", "more than 0"),
        ("[bot]\nbid_spread = -0.1\n", "bot.bid_spread", "at least 0"),
        ("[bot]\norder_levels = 0\n", "bot.order_levels", "at least 1"),
        ("[bot]\norder_refresh_time = \"1 sec\"\n", "bot.order_refresh_time", "bad duration"),
        ("[bot]\nspred = 0.1\n", "bot.spred", "unknown key"),
        ("[bot]\noptions = 3\n", "bot.options", "table"),
        ("[expect]\nmax_open_order = 2\n", "expect.max_open_order", "unknown key"),
        ("[expect]\nmax_open_orders = \"2\"\n", "expect.max_open_orders", "true, false or a number"),
        ("[expect]\nfalse_cancels = -1\n", "expect.false_cancels", "number >= 0"),
        ("[expect]\nopen_orders_slack = 1.5\n", "expect.open_orders_slack", "whole number"),
        ("[expect]\ngrace = \"2 fortnights\"\n", "expect.grace", "bad duration"),
        ("[expect]\nno_final_state_exit = \"yes\"\n", "expect.no_final_state_exit", "true, false"),
        ("[expect.policy.naive]\nviolated = [\"orphan\"]\n", "expect.policy.naive.violated[0]", "unknown check"),
        ("[expect.policy.sloppy]\nviolated = []\n", "expect.policy.sloppy", "unknown policy"),
        ("[expect.policy.naive]\nviolated = \"orphans\"\n", "expect.policy.naive.violated", "list"),
        ("[expect.policy.naive]\nviolated = [1]\n", "expect.policy.naive.violated[0]", "string"),
        ("[expect.policy.naive]\nbroken = []\n", "expect.policy.naive.broken", "unknown key"),
        ("[exchange]\nbogus = 1\n", "exchange.bogus", "unknown key"),
    ],
)
def test_errors_name_file_and_key(tmp_path, text, key, what):
    path = write(tmp_path, text, "bad.toml")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert what in message
    assert err.value.key == key and err.value.path == str(path)


def test_invalid_toml_names_file_and_line(tmp_path):
    path = write(tmp_path, "[scenario]\nname = \n", "broken.toml")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value).startswith(f"{path}: invalid TOML") and "line 2" in str(err.value)


def test_missing_file(tmp_path):
    with pytest.raises(ScenarioError, match="no such file"):
        load_scenario(tmp_path / "nope.toml")


def test_loads_scenario_names_its_source():
    with pytest.raises(ScenarioError, match=r"^<inline>: scenario\.seed: "):
        loads_scenario("[scenario]\nseed = -1\n", "<inline>")


SHIPPED = sorted((Path(__file__).resolve().parent.parent / "scenarios").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_scenarios_load(path):
    sc = load_scenario(path)
    sc.schedule(start=0.0)


def test_expect_thresholds_are_accepted_by_the_checks(tmp_path):
    checks = pytest.importorskip("replay.checks")
    sc = load_scenario(write(tmp_path, FULL))
    own = {"open_orders_slack", "grace_s", "place_resolve_s", "cancel_resolve_s", "requote_bound_s"}
    thresholds = {k: v for k, v in sc.expect.items() if k not in own}
    checks.validate_thresholds(thresholds)
    for names in sc.expected_violations.values():
        assert set(names) <= set(checks.CHECK_NAMES)


def test_readme_examples_load():
    import re

    readme = Path(__file__).resolve().parent.parent / "scenarios" / "README.md"
    blocks = re.findall(r"```toml\n(.*?)```", readme.read_text(encoding="utf-8"), re.S)
    assert blocks
    for i, block in enumerate(blocks):
        loads_scenario(block, f"README block {i}").schedule(start=0.0)
