"""Paths in a scenario file are relative to the scenario file, always; a missing capture is
refused when the scenario loads."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from replay.cli import main
from replay.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parent.parent
REPLAY_SCENARIOS = sorted((ROOT / "scenarios").glob("replay_*.toml"))


def test_there_are_shipped_replay_scenarios():
    assert [p.name for p in REPLAY_SCENARIOS] == ["replay_reference_session.toml", "replay_seed_log.toml"]


@pytest.mark.parametrize("path", REPLAY_SCENARIOS, ids=lambda p: p.stem)
def test_shipped_replay_scenarios_run_from_another_directory(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    scenario = load_scenario(path)
    assert scenario.resolve(scenario.market["capture"]).resolve().parent == ROOT / "captures"
    res = CliRunner().invoke(main, ["run", str(path), "--no-timeline"])
    assert res.exit_code == 0, res.output


def test_a_relative_path_never_falls_back_to_the_current_directory(tmp_path, monkeypatch):
    here = tmp_path / "cwd"
    (here / "captures").mkdir(parents=True)
    (here / "captures" / "x.jsonl").write_text("", encoding="utf-8")  # there, but not beside the scenario
    elsewhere = tmp_path / "suite"
    elsewhere.mkdir()
    path = elsewhere / "s.toml"
    path.write_text('[market]\ncapture = "captures/x.jsonl"\n', encoding="utf-8")
    monkeypatch.chdir(here)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert str(err.value).startswith(f"{path}: market.capture: {elsewhere / 'captures' / 'x.jsonl'}: no such file")
    (elsewhere / "captures").mkdir()
    (elsewhere / "captures" / "x.jsonl").write_text("", encoding="utf-8")
    assert load_scenario(path).resolve("captures/x.jsonl") == elsewhere / "captures" / "x.jsonl"


def test_a_missing_capture_is_refused_at_load_naming_the_key(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[market]\ncapture = "nowhere.jsonl"\n', encoding="utf-8")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert err.value.key == "market.capture"
    assert str(err.value) == (f"{path}: market.capture: {tmp_path / 'nowhere.jsonl'}: no such file "
                              "(a relative path is relative to the scenario file's directory)")
    (tmp_path / "adir.jsonl").mkdir()
    path.write_text('[market]\ncapture = "adir.jsonl"\n', encoding="utf-8")
    with pytest.raises(ScenarioError, match="market.capture: .*adir.jsonl: is not a file"):
        load_scenario(path)
    # `valr-replay run` refuses it as bad input, before anything starts
    res = CliRunner().invoke(main, ["run", str(path)])
    assert res.exit_code == 2 and "market.capture" in res.output
