"""A connector as a user's Hummingbot fork has it: its own package (with VALR's URLs in its own
constants module), importable from the current directory, no ``open_orders_policy`` setting, run with
one command. Its URLs are redirected, Hummingbot's PMM quotes through it, and the verdict comes from
the scenario's base expectations (every check holds), so a connector with the bug exits 1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("hummingbot.connector.exchange_py_base", reason="needs the Hummingbot environment")

ROOT = Path(__file__).resolve().parents[2]
OURS = ROOT / "replay" / "hummingbot" / "valr"


@pytest.mark.timeout(120)
def test_a_fork_connector_from_the_current_directory_with_one_command(tmp_path: Path) -> None:
    fork = tmp_path / "myfork_valr"
    shutil.copytree(OURS, fork, ignore=shutil.ignore_patterns("__pycache__"))
    # the fork's handler is the buggy one, and it has no setting for it
    (fork / "fork_exchange.py").write_text(textwrap.dedent('''
        from .valr_exchange import ValrExchange


        class ForkValrExchange(ValrExchange):
            def __init__(self, valr_api_key, valr_api_secret, trading_pairs=None, trading_required=True):
                super().__init__(valr_api_key, valr_api_secret, trading_pairs, trading_required,
                                 open_orders_policy="naive")
    '''))
    scenario = tmp_path / "race.toml"
    scenario.write_text((ROOT / "scenarios" / "open_orders_race.toml").read_text()
                        .replace('duration = "60s"', 'duration = "12s"'))
    out = tmp_path / "run.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALR_") and k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-m", "replay", "run", str(scenario),
         "--connector", "hummingbot:myfork_valr.fork_exchange:ForkValrExchange", "--json", str(out),
         "--trace", str(tmp_path / "trace.jsonl")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=100)
    assert done.returncode == 1, done.stdout + done.stderr  # the bug is there: NOT as expected
    [run] = json.loads(out.read_text())["runs"]
    assert run["expected_violations"] == []  # no policy verdicts for a connector without our policy setting
    assert "false_cancels" in run["violated"] and "orphans" in run["violated"]
    records = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()[1:]]
    meta = next(r["data"] for r in records if r.get("type") == "HUMMINGBOT")
    assert meta["connector"] == "myfork_valr.fork_exchange:ForkValrExchange" and meta["policy"] is None
    redirected = {(r["module"], r["name"]) for r in meta["redirected"]}
    assert ("myfork_valr.valr_constants", "REST_URL") in redirected
    assert all(not r["to"].startswith(("https://", "wss://")) for r in meta["redirected"])


@pytest.mark.timeout(120)
def test_the_main_environment_hands_a_hummingbot_run_to_the_hummingbot_environment(tmp_path: Path) -> None:
    main_python = ROOT / ".venv" / "bin" / "python"
    if not main_python.exists():
        pytest.skip("no main environment (.venv) beside this one")
    done = subprocess.run([str(main_python), "-c", "import hummingbot"], capture_output=True)
    if done.returncode == 0:
        pytest.skip("the main environment has Hummingbot itself")
    scenario = tmp_path / "race.toml"
    scenario.write_text((ROOT / "scenarios" / "open_orders_race.toml").read_text()
                        .replace('duration = "60s"', 'duration = "4s"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALR_")}
    env["VALR_REPLAY_HUMMINGBOT_PYTHON"] = sys.executable  # this environment: it has Hummingbot
    done = subprocess.run([str(main_python), "-m", "replay", "run", str(scenario), "--connector", "hummingbot",
                           "--policy", "reconcile", "--json", str(tmp_path / "run.json")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=100)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "running in the Hummingbot environment" in done.stderr
    [run] = json.loads((tmp_path / "run.json").read_text())["runs"]
    assert run["violated"] == []
