"""The pytest plugin: which files it collects, --connector / --expect-hold, the fixtures' arguments
and their documentation, and a scenario suite under pytest-xdist. Scenario files are a few
simulated seconds on virtual time; each pytester run is a pytest subprocess."""

from __future__ import annotations

import inspect
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# A short scenario in which the reference connector under reconcile holds every check.
SHORT = """\
[scenario]
name = "{name}"
duration = "3s"
seed = 4

[latency]
default = "1ms..4ms"
engine = "1ms..4ms"
OPEN_ORDERS_UPDATE = "1ms..8ms"

[bot]
policy = "reconcile"
order_refresh_time = "1s"
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

# The same, expecting reconcile to violate a check it holds: not as expected, unless every
# check is required to hold (--expect-hold).
WRONG = SHORT + """
[expect.policy.reconcile]
violated = ["max_open_orders"]
"""

# A connector named as module:attr: the reference adapter, leaving a mark that it was used.
MYBOT = '''\
from pathlib import Path

from replay.connector.adapter import load_connector


def make(**options):
    Path(__file__).with_name("mybot.used").write_text(options.get("policy") or "", encoding="utf-8")
    return load_connector("reference", **options)
'''

PYPROJECT = """\
[build-system]
requires = ["setuptools"]

[project]
name = "mybot"

[tool.pytest.ini_options]
addopts = ""
"""

SERVE_CONFIG = """\
[[pairs]]
symbol = "BTCZAR"

[[accounts]]
name = "maker"
api_key = "k"
api_secret = "s"

[market]
mid = "1500000"
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args)


# --- which files are scenarios -----------------------------------------------------------------


def test_collection_rule(tmp_path):
    from replay.pytest_plugin import is_scenario_file

    def file(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    scenarios = [
        file("empty.toml", ""),                               # documented as a valid scenario
        file("comments.toml", "# nothing yet\n"),
        file("no_head.toml", '[latency]\ndefault = "1ms"\n'),  # no [scenario] line
        file("market_only.toml", '[market]\npairs = ["BTCZAR"]\n'),
        file("typo.toml", '[scenaro]\nname = "x"\n'),           # collected, so that the load reports it
        file("mixed.toml", '[bot]\npolicy = "naive"\n[tool.x]\na = 1\n'),
        file("broken.toml", "[scenario\n"),
    ]
    others = [
        file("pyproject.toml", PYPROJECT),
        file("ruff.toml", "line-length = 100\n[lint]\nselect = ['E']\n"),
        file("exchange.toml", SERVE_CONFIG),
        file("notes.txt", ""),
    ]
    assert [p.name for p in scenarios if not is_scenario_file(p)] == []
    assert [p.name for p in others if is_scenario_file(p)] == []
    # A .toml named on the command line is always a scenario.
    assert is_scenario_file(tmp_path / "pyproject.toml", named=True)


def test_plugin_collects_every_scenario_file_under_a_directory(pytester):
    pytester.makefile(".toml", empty="")
    pytester.makefile(".toml", no_head='[latency]\ndefault = "1ms"\n\n[bot]\npolicy = "reconcile"\n')
    pytester.mkdir("more")
    (pytester.path / "more" / "short.toml").write_text(SHORT.format(name="nested"), encoding="utf-8")
    (pytester.path / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    pytester.makefile(".toml", exchange=SERVE_CONFIG)
    result = run(pytester, "--collect-only", "-q", ".")
    result.stdout.fnmatch_lines_random(["empty.toml::empty[[]naive[]]", "no_head.toml::no_head[[]reconcile[]]",
                                        "more/short.toml::nested[[]reconcile[]]"])
    result.stdout.no_fnmatch_line("*pyproject*")
    result.stdout.no_fnmatch_line("*exchange.toml*")
    assert result.ret == 0


def test_plugin_reports_a_bad_scenario_file_as_a_collection_error(pytester):
    pytester.makefile(".toml", typo='[scenaro]\nname = "x"\n')
    pytester.makefile(".toml", bad_latency='[latency]\nORDER_STATUS_UPDTE = "5ms..15ms"\n')
    pytester.makefile(".toml", tool='[tool.x]\na = 1\n')
    result = run(pytester, "--collect-only", "-q", ".")
    result.stdout.fnmatch_lines_random(["*typo.toml: scenaro: unknown key*",
                                        "*bad_latency.toml: latency.ORDER_STATUS_UPDTE: *ORDER_STATUS_UPDATE*"])
    result.stdout.no_fnmatch_line("*tool.toml*")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    # The same file named on the command line is collected, and refused as `valr-replay run` would.
    result = run(pytester, "--collect-only", "-q", "tool.toml")
    result.stdout.fnmatch_lines(["*tool.toml: tool: unknown key*"])


# --- --connector and --expect-hold -------------------------------------------------------------


def test_plugin_runs_scenario_files_with_the_connector_named(pytester):
    pytester.makefile(".toml", short=SHORT.format(name="short"))
    pytester.makepyfile(mybot=MYBOT)
    result = run(pytester, "--connector", "mybot:make", "-v", "short.toml")
    result.assert_outcomes(passed=1)
    assert (pytester.path / "mybot.used").read_text(encoding="utf-8") == "reconcile"


def test_plugin_refuses_a_misspelt_connector(pytester):
    pytester.makefile(".toml", short=SHORT.format(name="short"))
    result = run(pytester, "--connector", "mybot.make", "short.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--connector 'mybot.make': expected 'reference', 'module:attr'*"])


def test_plugin_expect_hold_judges_by_the_base_expectations(pytester):
    pytester.makefile(".toml", wrong=WRONG.format(name="wrong"))
    result = run(pytester, "wrong.toml")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*checks not as expected: max_open_orders*"])
    result = run(pytester, "--expect-hold", "wrong.toml")
    result.assert_outcomes(passed=1)


def test_plugin_options_are_documented():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for option in ("--policy", "--connector", "--expect-hold", "--valr-seed", "-n auto"):
        assert option in readme, option


# --- the fixtures --------------------------------------------------------------------------------


def test_valr_scenario_takes_a_connector_and_expect_hold(valr_scenario, tmp_path, monkeypatch):
    (tmp_path / "mybot_fixture.py").write_text(MYBOT, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(WRONG.format(name="wrong"), encoding="utf-8")
    assert not valr_scenario(wrong).as_expected
    result = valr_scenario(wrong, connector="mybot_fixture:make", expect_hold=True)
    assert result.as_expected, result.unexpected
    assert (tmp_path / "mybot.used").read_text(encoding="utf-8") == "reconcile"


def _fixture_doc(name: str) -> str:
    from replay import pytest_plugin

    return textwrap.dedent(getattr(pytest_plugin, name).__doc__ or "")


def _readme_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Testing your own connector")
    return readme[start:readme.index("\n## ", start + 1)]


def test_fixture_arguments_are_documented(valr_scenario):
    params = [p for p in inspect.signature(valr_scenario).parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = [p.name for p in params]
    assert names == ["path", "policy", "seed", "connector", "expect_hold"]
    doc = _fixture_doc("valr_scenario")
    section = _readme_section()
    for name in names + ["**kwargs"]:
        assert f"``{name}``" in doc, name
        assert f"`{name}`" in section, name
    server_doc = _fixture_doc("valr_server")
    for attr in ("rest_url", "ws_account_url", "ws_trade_url", "api_key", "api_secret", "exchange", "server"):
        assert f"``{attr}``" in server_doc, attr
        assert re.search(rf"`{attr}`", section), attr


# --- pytest-xdist ----------------------------------------------------------------------------------


def test_scenario_files_run_under_xdist(pytester):
    pytester.makefile(".toml", one=SHORT.format(name="one"))
    pytester.makefile(".toml", two=SHORT.format(name="two"))
    result = run(pytester, "-n", "2", "--policy", "reconcile", "--policy", "ignore", ".")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*2 workers*"])
