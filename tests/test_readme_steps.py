"""README's "Testing your own connector" steps, run as written (from examples/), with the exit
status each one states."""

from __future__ import annotations

import glob
import os
import re
import shlex
import subprocess
import sys

import pytest

from conftest import ROOT


def _steps(heading: str = "## Testing your own connector") -> list[tuple[str, int]]:
    """The ``valr-replay`` lines of the first bash block under ``heading``, each with the exit status
    its comment states."""
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    steps = []
    for line in block.splitlines():
        if line.startswith("valr-replay "):
            command, _, comment = line.partition("#")
            code = re.search(r"exit (\d)", comment)
            assert code, f"README step without its exit status: {line}"
            steps.append((command.strip(), int(code.group(1))))
    return steps


STEPS = _steps()


def test_the_section_has_the_three_steps() -> None:
    assert len(STEPS) == 3
    assert "--connector mybot:buggy --connector mybot:fixed" in STEPS[1][0] and "--expect-hold" in STEPS[2][0]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("command", "code"), STEPS, ids=["reproduce", "compare", "verify"])
def test_readme_step(command: str, code: int) -> None:
    argv = shlex.split(command)
    cwd = ROOT / "examples"
    # the shell expands ../scenarios/*.toml; so do we
    args = [a2 for a in argv[1:] for a2 in (sorted(glob.glob(a, root_dir=cwd)) if "*" in a else [a])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALR_")}
    done = subprocess.run([sys.executable, "-m", "replay", *args, "--no-timeline"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=170)
    assert done.returncode == code, done.stdout[-3000:] + done.stderr[-3000:]
    if code == 1:
        assert "false_cancels" in done.stdout and "NOT as expected" in done.stdout


# --- "From a bug report to a regression test" -------------------------------------------------


@pytest.mark.timeout(300)
def test_the_bug_report_steps_run_as_written(tmp_path) -> None:
    """The section's commands, in order (each uses what the one before wrote), from a copy of the files
    they read laid out as in the repository."""
    steps = _steps("## From a bug report to a regression test")
    assert [s.split()[1] for s, _ in steps] == ["from-log", "run", "run", "cut", "run"]
    for rel in ("tests/data/seed_report.log", "captures/reference_session.jsonl",
                "scenarios/replay_reference_session.toml"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes((ROOT / rel).read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("VALR_")}
    for command, code in steps:
        args = shlex.split(command)[1:]
        if args[0] == "run":
            args.append("--no-timeline")
        done = subprocess.run([sys.executable, "-m", "replay", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == code, command + "\n" + done.stdout[-3000:] + done.stderr[-3000:]
        if code == 1:
            assert "false_cancels" in done.stdout and "NOT as expected" in done.stdout
    generated = (tmp_path / "bug.toml").read_text()
    assert "[[ordering]]" in generated and 'gap = "5ms"' in generated
    # the committed scenario is this file, with what naive breaks declared
    committed = (ROOT / "scenarios" / "from_log_seed_report.toml").read_text()
    assert "[expect.policy.naive]" in committed and 'gap = "5ms"' in committed
    small = tmp_path / "bug" / "small.jsonl"
    assert small.stat().st_size < 0.10 * (ROOT / "captures" / "reference_session.jsonl").stat().st_size
