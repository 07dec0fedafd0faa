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


def _steps() -> list[tuple[str, int]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Testing your own connector", 1)[1].split("\n## ", 1)[0]
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
