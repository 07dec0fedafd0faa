"""What the README says agrees with the commands' --help and with the repository: bench --quick's
duration, bench --only's figures, and which captures git leaves out."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from replay.cli import main

ROOT = Path(__file__).resolve().parent.parent


def _help(*command: str) -> str:
    res = CliRunner().invoke(main, [*command, "--help"])
    assert res.exit_code == 0, res.output
    return " ".join(res.output.split())


def test_bench_quick_duration_is_the_same_in_the_readme_and_help():
    readme = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    in_readme = re.search(r"`--quick` takes (about [\d.]+ s)", readme)
    in_help = re.search(r"--quick Smaller sizes: (about [\d.]+ s)", _help("bench"))
    assert in_readme and in_help, "both state how long bench --quick takes"
    assert in_readme.group(1) == in_help.group(1)


def test_bench_only_help_names_every_figure():
    from replay.bench_command import _import_runner

    text = _help("bench")
    for name in _import_runner().FIGURES:
        assert name in text, name


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_a_users_captures_are_ignored_and_the_shipped_ones_are_not():
    shipped = _git("ls-files", "captures").stdout.split()
    assert "captures/seed_log.jsonl" in shipped and "captures/reference_session.jsonl" in shipped
    for path in shipped:  # the patterns themselves (--no-index), not the fact that they are tracked
        assert _git("check-ignore", "-q", "--no-index", path).returncode == 1, path
    # the README's example, and a trace written next to it
    for path in ("captures/my_session.jsonl.gz", "captures/run-trace.jsonl"):
        assert _git("check-ignore", "-q", "--no-index", path).returncode == 0, path
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "record --upstream https://api.valr.com --out captures/my_session.jsonl.gz" in readme
