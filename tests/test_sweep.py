"""``valr-replay run --seeds N``: a seed sweep, "a number for the fix works": failures out of N per
column, the exact one-sided 95 % upper bound of the failure rate, the checks that failed and the
failing seeds; the same results in this process, in local worker processes and on a Dask cluster."""

from __future__ import annotations

import json
import math
import operator
import re
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from replay.cli import main
from replay.sweep import RunSummary, Tally, binom_cdf, describe_rate, upper_bound
from replay.workers import RunPool, TaskFailed

from conftest import ROOT

# The race, short (one run: a few tenths of a second): naive leaks orders, reconcile holds.
RACE = (ROOT / "scenarios" / "open_orders_race.toml").read_text().replace('duration = "60s"', 'duration = "3s"')
SEEDS = 6


# --- the bound -----------------------------------------------------------------------------------------


def _cdf_exact(k: int, n: int, p: float) -> float:
    """P(X <= k), X ~ Binomial(n, p), summed directly in exact rationals (a different method)."""
    q = Fraction(p)
    return float(sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(k + 1)))


def test_clopper_pearson_upper_bound():
    assert upper_bound(0, 500) == pytest.approx(1 - 0.05 ** (1 / 500), rel=1e-12)
    assert upper_bound(0, 500) == pytest.approx(0.005973551, rel=1e-6)
    assert upper_bound(0, 1) == pytest.approx(0.95, rel=1e-12)
    assert upper_bound(7, 7) == 1.0
    # 5 failures in 100: the bound is the p at which 5 or fewer has probability 0.05 (about 0.1023)
    bound = upper_bound(5, 100)
    assert _cdf_exact(5, 100, bound) == pytest.approx(0.05, abs=1e-9)
    assert _cdf_exact(5, 100, bound - 1e-4) > 0.05 > _cdf_exact(5, 100, bound + 1e-4)
    assert bound == pytest.approx(0.10225, abs=5e-5)
    assert binom_cdf(5, 100, 0.07) == pytest.approx(_cdf_exact(5, 100, 0.07), rel=1e-12)
    for bad in ((1, 0), (-1, 5), (6, 5)):
        with pytest.raises(ValueError):
            upper_bound(*bad)


def test_rates_in_words():
    assert describe_rate(0, 500) == "below 0.6 %"
    assert describe_rate(0, 5000) == "below 0.06 %"
    assert describe_rate(6, 500) == "1.2 % (95 % bound 2.4 %)"  # 2.36 %, rounded up: a bound is never shown lower
    assert describe_rate(6, 6) == "100 % (95 % bound 100 %)"


def test_a_tally_counts_failures_and_verdicts_whatever_order_runs_come_in():
    tally = Tally("race", "naive", "reference", "naive")
    runs = ((2, ("orphans",), True), (0, (), False), (1, ("orphans", "false_cancels"), True))
    for seed, violated, as_expected in runs:
        tally.add(RunSummary("naive", seed, violated, as_expected, (), f"valr-replay run x --seed {seed}", (), 0.1))
    assert [r.seed for r in tally.runs] == [0, 1, 2]
    doc = tally.to_json()
    assert (doc["n"], doc["failures"], doc["as_expected"], doc["not_as_expected"]) == (3, 2, 2, 1)
    assert doc["by_check"] == {"orphans": 2, "false_cancels": 1}
    assert doc["failing_seeds"] == [1, 2] and doc["not_as_expected_seeds"] == [0]
    assert doc["rate"] == pytest.approx(2 / 3) and doc["upper_95"] == pytest.approx(upper_bound(2, 3))


# --- the pool ------------------------------------------------------------------------------------------


def drain(pool: RunPool) -> tuple[dict[int, object], list[int]]:
    """Every pending task's result by ticket, and the tickets of those that raised."""
    results: dict[int, object] = {}
    failed: list[int] = []
    while pool.pending:
        try:
            ticket, value = pool.next_done()
        except TaskFailed as exc:
            failed.append(exc.ticket)
            continue
        results[ticket] = value
    return results, failed


@pytest.mark.parametrize("workers", [1, 2])
def test_run_pool_hands_back_results_and_failures(workers: int):
    with RunPool(workers=workers) as pool:
        tickets = {pool.submit(operator.add, i, 10): i for i in range(4)}
        bad = pool.submit(math.sqrt, -1)
        results, failed = drain(pool)
    got = {tickets[t]: v for t, v in results.items()}
    assert got == {i: i + 10 for i in range(4)} and failed == [bad]


# --- the command ---------------------------------------------------------------------------------------


def _sweep(workdir: Path, *args: str) -> tuple[int, str, dict | None]:
    out = workdir / f"sweep-{len(list(workdir.glob('sweep-*.json')))}.json"
    res = CliRunner().invoke(main, ["run", str(workdir / "race.toml"), "--policy", "naive", "--policy", "reconcile",
                                    "--seeds", str(SEEDS), "--json", str(out), *args])
    doc = json.loads(out.read_text()) if out.exists() else None
    return res.exit_code, res.output, doc


def _per_seed(doc: dict) -> dict[tuple[str, int], tuple]:
    return {(r["label"], r["seed"]): (tuple(r["violated"]), r["as_expected"], tuple(r["unexpected"]))
            for r in doc["runs"]}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sweep")
    (path / "race.toml").write_text(RACE)
    return path


@pytest.fixture(scope="module")
def in_process(workdir: Path) -> tuple[int, str, dict]:
    code, output, doc = _sweep(workdir, "--workers", "1")
    assert doc is not None, output
    return code, output, doc


def test_a_sweep_counts_failures_per_column(in_process: tuple[int, str, dict]):
    code, output, doc = in_process
    assert doc["schema_version"] == 2 and set(doc) == {"schema_version", "runs", "sweep"}
    sweep = doc["sweep"]
    assert (sweep["first_seed"], sweep["seeds"], sweep["where"]) == (0, SEEDS, "in-process")
    labels = {t["label"]: t for t in sweep["labels"]}
    assert list(labels) == ["naive", "reconcile"]
    for t in labels.values():
        assert {"scenario", "label", "connector", "policy", "n", "failures", "as_expected", "not_as_expected",
                "errors", "rate", "upper_95", "rate_text", "by_check", "failing_seeds"} <= set(t)
        assert t["n"] == SEEDS and t["errors"] == 0
    naive, reconcile = labels["naive"], labels["reconcile"]
    assert (naive["failures"], naive["rate"], naive["upper_95"]) == (SEEDS, 1.0, 1.0)
    assert naive["failing_seeds"] == list(range(SEEDS))
    assert naive["by_check"]["false_cancels"] == SEEDS
    assert (reconcile["failures"], reconcile["rate"], reconcile["by_check"]) == (0, 0, {})
    assert reconcile["failing_seeds"] == []
    assert reconcile["upper_95"] == pytest.approx(1 - 0.05 ** (1 / SEEDS))
    assert reconcile["rate_text"] == "below 40 %"
    # one compact row per run, as the scenario expects or not; the exit status follows the verdicts
    assert len(doc["runs"]) == 2 * SEEDS
    for row in doc["runs"]:
        assert {"scenario", "label", "connector", "policy", "seed", "violated", "as_expected", "unexpected",
                "wall_seconds", "reproduce"} == set(row)
        assert row["reproduce"].endswith(f"--policy {row['policy']} --seed {row['seed']}")
    assert code == (0 if all(r["as_expected"] for r in doc["runs"]) else 1), output
    # the table, the rate in words and a failing seed's reproduce command
    assert "below 40 %" in output and "100 % (95 % bound 100 %)" in output
    assert re.search(r"naive: (failing seeds|seeds not as expected)", output) and "--policy naive --seed 0" in output


def test_local_worker_processes_give_the_same_runs_seed_for_seed(workdir: Path, in_process: tuple[int, str, dict]):
    code, output, doc = _sweep(workdir, "--workers", "2")
    assert doc is not None, output
    assert doc["sweep"]["where"] == "2 local processes"
    assert _per_seed(doc) == _per_seed(in_process[2])
    assert code == in_process[0]


def test_a_sweep_from_another_seed(workdir: Path):
    res = CliRunner().invoke(main, ["run", str(workdir / "race.toml"), "--policy", "reconcile", "--seed", "40",
                                    "--seeds", "2", "--workers", "1"])
    assert "seeds 40..41" in res.output and "below 78 %" in res.output, res.output


@pytest.mark.parametrize("args, message", [
    (["--seeds", "0"], "--seeds 0: expected a number of seeds >= 1"),
    (["--seeds", "3", "--trace", "t.jsonl"], "--trace writes one run's trace and does not go with --seeds"),
    (["--workers", "2"], "--workers goes with --seeds N"),
    (["--dask", "tcp://127.0.0.1:1"], "--dask goes with --seeds N"),
    (["--seeds", "3", "--workers", "0"], "--workers 0: expected a number >= 1"),
    (["--seeds", "3", "--workers", "2", "--dask", "tcp://127.0.0.1:1"], "--workers and --dask exclude each other"),
])
def test_bad_sweep_options_are_refused_before_anything_runs(workdir: Path, args: list[str], message: str):
    res = CliRunner().invoke(main, ["run", str(workdir / "race.toml"), *args])
    assert res.exit_code == 2 and message in res.output, res.output


def test_the_hummingbot_hand_off_keeps_the_sweep_options(monkeypatch: pytest.MonkeyPatch, workdir: Path):
    from replay import run_command
    from replay.hummingbot import bot

    class HandedOff(Exception):
        pass

    def execv(path: str, argv: list[str]) -> None:
        raise HandedOff(argv)

    argv = ["valr-replay", "run", str(workdir / "race.toml"), "--connector", "hummingbot", "--seeds", "50",
            "--dask", "tcp://10.0.0.1:8786"]
    monkeypatch.setattr(bot, "hummingbot_importable", lambda: False)
    monkeypatch.setattr(bot, "hummingbot_python", lambda: "/hb/bin/python")
    monkeypatch.setattr(run_command.os, "execv", execv)
    monkeypatch.setattr(sys, "argv", argv)
    res = CliRunner().invoke(main, argv[1:])
    assert isinstance(res.exception, HandedOff), res.output
    assert res.exception.args[0] == ["/hb/bin/python", "-m", "replay", *argv[1:]]


# --- Dask ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.mark.timeout(120)
def test_a_sweep_on_a_dask_cluster_gives_the_same_runs_seed_for_seed(dask_cluster, workdir: Path,
                                                                     in_process: tuple[int, str, dict]):
    code, output, doc = _sweep(workdir, "--dask", dask_cluster.scheduler_address)
    assert doc is not None, output
    assert doc["sweep"]["where"].startswith(f"dask {dask_cluster.scheduler_address}")
    assert _per_seed(doc) == _per_seed(in_process[2])
    assert code == in_process[0]


@pytest.mark.timeout(120)
def test_run_pool_takes_a_client_that_is_not_the_default(dask_cluster):
    from distributed import Client

    with Client(dask_cluster, set_as_default=False) as client:
        with RunPool(dask=client) as pool:
            first = pool.submit(operator.add, 1, 2)
            bad = pool.submit(math.sqrt, -1)
            results, failed = drain(pool)
    assert results == {first: 3} and failed == [bad]


def test_a_users_connector_in_worker_processes_and_a_run_that_cannot_start(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A connector module in the current directory is found by worker processes started elsewhere; a
    run that cannot be carried out is counted apart (not a failure of the rate) and exits 2."""
    (tmp_path / "sweepbot.py").write_text(
        "from replay.clock import Clock\nfrom replay.connector.adapter import ReferenceAdapter\n\n\n"
        "def fixed(**options):\n    return ReferenceAdapter(**{**options, 'policy': 'reconcile'})\n\n\n"
        "def wall_clock_signer(**options):\n    return ReferenceAdapter(**{**options, 'clock': Clock()})\n")
    (tmp_path / "race.toml").write_text(RACE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    try:
        res = CliRunner().invoke(main, ["run", "race.toml", "--connector", "sweepbot:fixed", "--connector",
                                        "sweepbot:wall_clock_signer", "--seeds", "2", "--workers", "2",
                                        "--json", "out.json"])
    finally:
        sys.modules.pop("sweepbot", None)
    assert res.exit_code == 2, res.output
    fixed, signer = json.loads((tmp_path / "out.json").read_text())["sweep"]["labels"]
    assert (fixed["label"], fixed["n"], fixed["failures"], fixed["errors"]) == ("sweepbot:fixed", 2, 0, 0)
    assert (signer["n"], signer["errors"], signer["failing_seeds"]) == (0, 2, [])
    assert "failed to start" in res.output and "Traceback" not in res.output
