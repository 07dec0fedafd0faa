"""Every shipped scenario under our Hummingbot VALR connector and Hummingbot's own PMM comes out as
it does for the reference connector (the scenario's declared verdicts), but for the one difference
a scenario's comments explain."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("hummingbot.connector.exchange_py_base", reason="needs the Hummingbot environment")

from replay.runner import run_scenario  # noqa: E402
from replay.scenario import load_scenario  # noqa: E402

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.toml"))
POLICIES = ("naive", "age-guard:5", "ignore", "reconcile")

# Hummingbot's tracker applies an ORDER_STATUS_UPDATE to a cached order: after naive's false
# CANCELED the "Placed" status moves it back to OPEN. The scenario declares it for this connector
# ([expect.connector.hummingbot.policy.naive] in scenarios/replay_reference_session.toml).
DIFFERENCES = {("replay-reference-session", "naive"): {"final_state_exit"}}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenario_under_hummingbot(path: Path, policy: str) -> None:
    scenario = load_scenario(path)
    if scenario.multi_bot:
        # one Hummingbot connector per process (process-wide clock, URLs and HTTP session): its bots cannot all
        # run Hummingbot, and --policy does not apply to a file whose bots each name their own
        pytest.skip("several bots ([[bot]]): their connectors and policies are the file's")
    scenario.bot.connector = "hummingbot"
    result = run_scenario(scenario, policy)
    assert result.as_expected, (result.violated, result.expected_violations)
    reference = set(scenario.expected_violations.get(policy, []))
    declared = scenario.expected_by_connector.get("hummingbot")
    if declared is None or declared.policy.get(policy) is None:
        # no verdict of its own for this connector: it must come out as the reference connector does
        assert set(result.violated) == reference | DIFFERENCES.get((scenario.name, policy), set())
    if not result.expected_violations:
        peak = next(c.figures["peak"] for c in result.checks if c.name == "max_open_orders")
        assert peak <= 2  # the bot's own bid and ask
