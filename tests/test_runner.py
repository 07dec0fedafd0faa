"""The scenario runner and its front ends: determinism, bad files, ``valr-replay run``, the
pytest plugin. Short scenarios (a few simulated seconds, virtual time) keep it fast."""

from __future__ import annotations

import json
import re
import textwrap
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from replay.auth import auth_headers
from replay.capture import dumps, read_capture
from replay.cli import main
from replay.runner import run_scenario
from replay.scenario import ScenarioError, load_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"

# A short, quick scenario with random latencies and a probabilistic fault, so the seed
# matters; reconcile holds every judged check in it.
SHORT = """\
[scenario]
name = "short"
duration = "6s"
seed = 4

[latency]
default = "1ms..4ms"
engine = "1ms..4ms"
PLACE_LIMIT_WS_RESPONSE = "4ms..30ms"
OPEN_ORDERS_UPDATE = "1ms..8ms"
ORDER_STATUS_UPDATE = "2ms..12ms"
rest = "5ms..25ms"

[[perturb]]
name = "slow-place-reply"
match = { type = "PLACE_LIMIT_WS_RESPONSE", probability = 0.5 }
delay = "1.1s..1.4s"

[bot]
policy = "reconcile"
order_refresh_time = "2s"
bid_spread = 0.003
ask_spread = 0.003
filled_order_delay = "1s"

[expect]
max_open_orders = 2
open_orders_slack = 2
false_cancels = 0
orphans_at_end = 0
nothing_open_after_shutdown = true
"""

WRONG = SHORT + """
[expect.policy.reconcile]
violated = ["max_open_orders"]           # deliberately wrong: reconcile holds it
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


PORT = re.compile(r"127\.0\.0\.1:\d+")


def normalised(records: list[dict[str, Any]]) -> list[str]:
    """Each record as JSON, with the server's ephemeral port (Host headers, URLs) blanked."""
    return [PORT.sub("127.0.0.1:PORT", dumps(r)) for r in records]


def deliveries(records: list[dict[str, Any]]) -> list[tuple[int, str, str]]:
    return [(r["t"], r["conn"], r["type"]) for r in records if r["kind"] == "ws" and r.get("dir") == "in"]


# --- the runner -------------------------------------------------------------------------------


def test_same_seed_same_trace_different_seed_different_schedule(tmp_path):
    scenario = load_scenario(write(tmp_path, "short.toml", SHORT))
    first = run_scenario(scenario, keep_records=True)
    second = run_scenario(scenario, keep_records=True)
    assert len(first.records) > 100
    assert normalised(first.records) == normalised(second.records)
    assert first.seed == second.seed == 4

    other = run_scenario(scenario, seed=5, keep_records=True)
    assert other.seed == 5
    # Different latency draws and fault choices: messages are delivered at other times ...
    assert deliveries(other.records) != deliveries(first.records)
    # ... because the schedule itself differs: the same pushes, other delivery times and
    # other replies picked by the probabilistic perturbation.
    def plan(seed: int) -> list[tuple[float, str]]:
        schedule = scenario.schedule(seed=seed, start=0.0)
        schedule.connection_opened(0.0, "account-1")
        for i in range(40):
            schedule.push(i * 0.01, "account-1", "PLACE_LIMIT_WS_RESPONSE", {"type": "PLACE_LIMIT_WS_RESPONSE", "n": i})
        return [(round(d.deliver_at, 9), d.message["n"]) for d in schedule.pop_due(1e9)]

    assert plan(4) == plan(4)
    assert plan(4) != plan(5)
    assert [p.conn for p in scenario.schedule(seed=4).applied] == []  # nothing applied before a push


def test_a_book_change_is_traced_once_per_pair_per_batch(tmp_path):
    """The background market changes the book some forty times a refresh; the trace has one
    BookChanged per pair per batch of events (what the trade stream publishes), not one per change."""
    result = run_scenario(load_scenario(write(tmp_path, "short.toml", SHORT)), keep_records=True)
    changes = [(r["t"], r["data"]["pair"]) for r in result.records if r["type"] == "BookChanged"]
    steps = 6  # the background market refreshes both pairs' ladders once a simulated second
    assert len(changes) >= 2 * steps
    assert len(changes) == len(set(changes))
    assert len(changes) < 10 * steps  # one per change would be some 40 per pair per step


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ('[bot]\npolicy = "yolo"\n', "bot.policy", "unknown policy 'yolo'"),
        ('[[perturb]]\nmatch = { type = "open_orders_update" }\ndelay = "1s"\n', "perturb[0].match.type",
         "OPEN_ORDERS_UPDATE"),
        ('[expect]\nmax_open_order = 2\n', "expect.max_open_order", "unknown key"),
        ('[scenario]\nduration = "-5s"\n', "scenario.duration", ""),
        ('[expect.policy.naive]\nviolated = ["orphan"]\n', "expect.policy.naive.violated[0]", "unknown check"),
    ],
)
def test_a_bad_scenario_file_names_file_and_key(tmp_path, text, key, problem):
    path = write(tmp_path, "bad.toml", text)
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {key}: "), message
    assert problem in message


def test_invalid_toml_names_file_and_line(tmp_path):
    path = write(tmp_path, "broken.toml", "[scenario]\nname = \n")
    with pytest.raises(ScenarioError, match=re.escape(str(path)) + r": invalid TOML: .*line 2"):
        load_scenario(path)


# --- valr-replay run ---------------------------------------------------------------------------


def test_run_exit_0_when_as_expected_with_json_and_trace(tmp_path):
    path = write(tmp_path, "short.toml", SHORT)
    out_json, trace = tmp_path / "out.json", tmp_path / "trace.jsonl"
    res = CliRunner().invoke(main, ["run", str(path), "--policy", "reconcile", "--json", str(out_json),
                                    "--trace", str(trace), "--no-timeline"])
    assert res.exit_code == 0, res.output

    doc = json.loads(out_json.read_text())
    assert doc["schema_version"] == 2
    runs = doc["runs"]
    assert isinstance(runs, list) and len(runs) == 1
    run = runs[0]
    assert {"scenario", "path", "connector", "connector_options", "policy", "seed", "expect_hold", "as_expected",
            "expected_violations", "violated", "unexpected", "reproduce", "perturbations", "sim_seconds",
            "wall_seconds", "trace", "checks"} <= set(run)
    assert (run["scenario"], run["policy"], run["seed"], run["as_expected"]) == ("short", "reconcile", 4, True)
    assert run["connector"] == "reference" and run["unexpected"] == []
    assert run["reproduce"] == f"valr-replay run {path} --policy reconcile --seed 4"
    assert run["perturbations"] and all(isinstance(n, int) and n > 0 for n in run["perturbations"].values())
    assert run["violated"] == [] and run["expected_violations"] == []
    assert run["trace"] == str(trace)
    names = [c["name"] for c in run["checks"]]
    assert names[:2] == ["max_open_orders", "duplicate_orders"] and "false_cancels" in names
    for c in run["checks"]:
        assert set(c) == {"name", "held", "figures", "message", "first_violation", "timeline"}
        assert c["held"] in (True, False, None) and isinstance(c["figures"], dict)
    by_name = {c["name"]: c for c in run["checks"]}
    assert by_name["false_cancels"]["held"] is True and by_name["false_cancels"]["figures"]["false_cancels"] == 0
    assert by_name["max_open_orders"]["figures"]["peak"] <= 2

    header, records, problems = read_capture(trace)
    assert problems == []
    assert (header["scenario"], header["policy"], header["seed"]) == ("short", "reconcile", 4)
    types = {(r["kind"], r["type"]) for r in records}
    assert {("meta", "RUN_START"), ("meta", "RUN_END"), ("client", "ORDER_STATE"),
            ("ws", "PLACE_LIMIT_ORDER"), ("event", "OrderStatusChanged")} <= types
    assert any(r["type"] == "PERTURBATION" for r in records)
    assert [r["t"] for r in records] == sorted(r["t"] for r in records)


def test_run_exit_1_when_a_verdict_is_not_as_expected(tmp_path):
    path = write(tmp_path, "wrong.toml", WRONG)
    out_json = tmp_path / "out.json"
    res = CliRunner().invoke(main, ["run", str(path), "--json", str(out_json), "--no-timeline"])
    assert res.exit_code == 1, res.output
    run = json.loads(out_json.read_text())["runs"][0]
    assert run["as_expected"] is False
    assert run["unexpected"] == ["max_open_orders"]
    assert run["expected_violations"] == ["max_open_orders"] and "max_open_orders" not in run["violated"]


def test_run_exit_2_for_a_bad_file_or_policy(tmp_path):
    bad = write(tmp_path, "bad.toml", '[bot]\npolicy = "yolo"\n')
    res = CliRunner().invoke(main, ["run", str(bad)])
    assert res.exit_code == 2
    assert "bot.policy" in res.output and "bad.toml" in res.output
    good = write(tmp_path, "short.toml", SHORT)
    res = CliRunner().invoke(main, ["run", str(good), "--policy", "age-guard"])
    assert res.exit_code == 2
    res = CliRunner().invoke(main, ["run", str(tmp_path / "missing.toml")])
    assert res.exit_code == 2


# --- the pytest plugin -------------------------------------------------------------------------


def test_plugin_collects_a_scenario_file_and_runs_it(pytester):
    pytester.makefile(".toml", short=SHORT)
    pytester.makefile(".toml", wrong=WRONG)
    pytester.makefile(".toml", notascenario='[tool.x]\na = 1\n')  # no [scenario]: not collected
    result = pytester.runpytest_subprocess("--policy", "reconcile", "-v", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["*short*reconcile*PASSED*", "*wrong*reconcile*FAILED*"])
    result.assert_outcomes(passed=1, failed=1)
    # The failure report names the unexpected check and how to reproduce the run.
    result.stdout.fnmatch_lines(["*checks not as expected: max_open_orders*",
                                 "*reproduce: valr-replay run *wrong.toml --policy reconcile --seed 4*"])


def test_valr_server_fixture_serves_a_signed_request(valr_server):
    path = "/v1/account/balances"
    headers = auth_headers(valr_server.api_key, valr_server.api_secret, "GET", path, "")
    request = urllib.request.Request(valr_server.rest_url + path, headers=headers)
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
        balances = json.loads(resp.read())
    assert {b["currency"] for b in balances} >= {"BTC", "ZAR"}
    # An unsigned request to the same route is refused.
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(valr_server.rest_url + path, timeout=10)
    assert info.value.code in (401, 403)


def test_shipped_scenarios_load():
    for path in sorted(SCENARIOS.glob("*.toml")):
        scenario = load_scenario(path)
        assert scenario.duration_s > 0, path
    assert textwrap.dedent(SHORT) == SHORT
