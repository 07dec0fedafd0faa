"""``valr-replay run --duration``: overrides every scenario's duration, bad values are exit 2, and the
reproduce command repeats it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from replay.cli import main
from replay.runner import reproduce_command
from replay.scenario import SpecError, load_scenario

from conftest import ROOT

RACE = ROOT / "scenarios" / "open_orders_race.toml"


@pytest.mark.parametrize(("value", "seconds"), [("90s", 90.0), ("10m", 600.0), ("6h", 21600.0), ("2.5", 2.5),
                                                ("45", 45.0), (" 3s ", 3.0)])
def test_with_duration_spellings(value: str, seconds: float) -> None:
    scenario = load_scenario(RACE)
    changed = scenario.with_duration(value)
    assert changed.duration_s == seconds
    assert scenario.duration_s == 60.0 and scenario.duration_override is None  # the loaded one is untouched
    assert f"--duration {value.strip()}" in reproduce_command(changed, "naive", 7)
    assert "--duration" not in reproduce_command(scenario, "naive", 7)


@pytest.mark.parametrize("value", ["0", "0s", "-5", "soon", "5 parsecs", "1e3"])
def test_bad_duration_values(value: str) -> None:
    with pytest.raises(SpecError):
        load_scenario(RACE).with_duration(value)
    res = CliRunner().invoke(main, ["run", str(RACE), "--duration", value])
    assert res.exit_code == 2, res.output
    assert "--duration" in res.output and "10m" in res.output


def test_run_duration_overrides_and_reproduces(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    res = CliRunner().invoke(main, ["run", str(RACE), "--policy", "reconcile", "--duration", "3s",
                                    "--json", str(out), "--no-timeline"])
    doc = json.loads(out.read_text())
    (row,) = doc["runs"]
    assert 3.0 <= row["sim_seconds"] < 20.0, row["sim_seconds"]  # 3 s of quoting, then shutdown and settling
    assert row["reproduce"] == f"valr-replay run {RACE} --policy reconcile --seed 7 --duration 3s"
    assert f"reproduce: {row['reproduce']}" in res.output
