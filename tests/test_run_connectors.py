"""``valr-replay run`` for a connector author: runs named by what ran, connectors side by side,
verdicts by connector, bad input refused before anything runs, output a CI log can use."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from replay.cli import main

from conftest import ROOT

# The race, short: naive leaks an order in every cycle, reconcile holds.
RACE = (ROOT / "scenarios" / "open_orders_race.toml").read_text().replace('duration = "60s"', 'duration = "4s"')

# Two versions of "my connector": the reference connector before and after the fix, as adapters
# (module:attr), which take no --policy of ours.
MYBOT = textwrap.dedent('''
    from replay.clock import Clock
    from replay.connector.adapter import ReferenceAdapter


    def buggy(**options):
        return ReferenceAdapter(**{**options, "policy": "naive"})


    def fixed(**options):
        return ReferenceAdapter(**{**options, "policy": "reconcile"})


    def wall_clock_signer(**options):
        # signs with the real wall clock while the run's exchange is on virtual time (2026-01-01)
        return ReferenceAdapter(**{**options, "clock": Clock()})
''')


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A connector author's directory: their module and a scenario, as the current directory."""
    (tmp_path / "mybot_v.py").write_text(MYBOT)
    (tmp_path / "race.toml").write_text(RACE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("mybot_v", None)


def _run(*args: str) -> tuple[int, str, dict | None, Path]:
    out = Path("out.json").resolve()
    res = CliRunner().invoke(main, ["run", *args, "--json", str(out), "--no-timeline"])
    doc = json.loads(out.read_text()) if out.exists() else None
    return res.exit_code, res.output, doc, out


def test_connectors_side_by_side_named_everywhere_and_judged_by_what_ran(workdir: Path) -> None:
    # the scenario's [expect.policy.naive] is about our policies: it does not judge the user's connectors
    code, output, doc, _ = _run("race.toml", "--connector", "mybot_v:buggy", "--connector", "mybot_v:fixed")
    assert code == 1, output  # the buggy one violates the base [expect]
    buggy, fixed = doc["runs"]
    assert (buggy["connector"], fixed["connector"]) == ("mybot_v:buggy", "mybot_v:fixed")
    assert buggy["policy"] is None and fixed["policy"] is None  # --policy means nothing to them
    assert buggy["expected_violations"] == [] and "false_cancels" in buggy["unexpected"]
    assert fixed["as_expected"] is True and fixed["violated"] == []  # the fix is reported as a fix
    assert buggy["reproduce"] == "valr-replay run race.toml --connector mybot_v:buggy --seed 7"
    assert "connector=mybot_v:buggy policy=-" in output and "connector=mybot_v:fixed" in output
    assert "reproduce: valr-replay run race.toml --connector mybot_v:fixed --seed 7" in output
    header = next(line for line in output.splitlines() if "check" in line and "mybot_v:buggy" in line)
    assert "mybot_v:fixed" in header  # one table, the two versions as columns


def test_expectations_keyed_by_connector_and_expect_hold(workdir: Path) -> None:
    Path("race.toml").write_text(RACE + textwrap.dedent('''
        [expect.connector."mybot_v:buggy"]
        violated = ["false_cancels", "orphans", "nothing_open_after_shutdown", "orders_closed", "final_state_exit"]
    '''))
    code, output, doc, _ = _run("race.toml", "--connector", "mybot_v:buggy")
    assert code == 0, output
    assert doc["runs"][0]["expected_violations"][0] == "false_cancels"
    # "verify my fix": every check must hold, whatever the scenario expects
    code, output, doc, _ = _run("race.toml", "--connector", "mybot_v:buggy", "--expect-hold")
    assert code == 1 and doc["runs"][0]["expect_hold"] is True, output
    assert doc["runs"][0]["reproduce"].endswith("--seed 7 --expect-hold")
    code, output, doc, _ = _run("race.toml", "--connector", "mybot_v:fixed", "--expect-hold")
    assert code == 0, output
    # the reference connector still answers to [expect.policy.naive]
    Path("race.toml").write_text(RACE.replace("[expect.policy.naive]", "[expect.policy.naive]\n# short: no pile-up")
                                 .replace('"max_open_orders", "false_cancels"', '"false_cancels"'))
    code, output, doc, _ = _run("race.toml", "--policy", "naive", "--policy", "reconcile")
    assert code == 0 and [r["policy"] for r in doc["runs"]] == ["naive", "reconcile"], output
    assert doc["runs"][0]["expected_violations"][0] == "false_cancels"


@pytest.mark.parametrize(("args", "message"), [
    (["--connector", "nosuch:thing"], "cannot import module 'nosuch'"),
    (["--connector", "mybot"], "--connector 'mybot': expected 'reference', 'package.module:attr'"),
    (["--connector", "mybot_v:nope"], "module 'mybot_v' has no attribute 'nope'"),
    (["--connector", "hummingbot:only.module"], "expected 'reference', 'package.module:attr'"),
])
def test_a_connector_that_cannot_run_is_refused_before_anything_runs(workdir: Path, args: list[str],
                                                                      message: str) -> None:
    code, output, doc, out = _run("race.toml", *args)
    assert code == 2 and message in output, output
    assert doc is None and "Traceback" not in output


def test_an_unknown_pair_and_an_unwritable_json_are_refused_at_load(workdir: Path) -> None:
    Path("doge.toml").write_text('[bot]\npair = "DOGEZAR"\n')
    res = CliRunner().invoke(main, ["run", "doge.toml"])
    assert res.exit_code == 2 and "bot.pair: unknown pair 'DOGEZAR'" in res.output
    res = CliRunner().invoke(main, ["run", "race.toml", "--json", "no/such/dir/out.json"])
    assert res.exit_code == 2 and "--json no/such/dir/out.json: no such directory" in res.output
    assert "simulated in" not in res.output  # nothing ran


def test_user_text_in_errors_is_printed_literally(workdir: Path) -> None:
    Path("opts.toml").write_text('[bot]\nmy_setting = 1\n')
    res = CliRunner().invoke(main, ["run", "opts.toml"])
    assert res.exit_code == 2
    assert "connector-specific settings go in [bot.options]" in res.output  # rich markup left it out


def test_a_run_that_fails_is_reported_and_the_others_still_run(workdir: Path) -> None:
    code, output, doc, _ = _run("race.toml", "--connector", "mybot_v:wall_clock_signer", "--connector",
                                "mybot_v:fixed")
    assert code == 2, output
    failed, ok = doc["runs"]
    assert failed["connector"] == "mybot_v:wall_clock_signer" and failed["as_expected"] is False
    # one paragraph: what failed and the likely cause
    assert "failed to start" in failed["error"] and "virtual time" in failed["error"]
    assert "--real-time" in failed["error"] and "Traceback" not in output
    assert ok["as_expected"] is True and ok["violated"] == []


def test_piped_output_is_full_width_and_the_reproduce_line_is_one_line(workdir: Path) -> None:
    long_name = "race_with_a_rather_long_file_name_that_would_wrap_at_eighty_columns_in_a_ci_log.toml"
    Path(long_name).write_text(RACE)
    done = subprocess.run([sys.executable, "-m", "replay", "run", long_name, "--policy", "ignore", "--policy",
                           "reconcile", "--no-timeline"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "COLUMNS": "80"})
    assert done.returncode == 0, done.stderr
    assert f"reproduce: valr-replay run {long_name} --policy ignore --seed 7\n" in done.stderr
    assert "policy=ignore seed=7\n  " in done.stderr  # no progress bar residue in a log
    assert "nothing_open_after_shutdown" in done.stdout  # not cut to "nothing_open_after_shu…"
    assert "…" not in done.stdout and "\x1b[" not in done.stdout + done.stderr  # no ellipses, no colour codes
