"""The ``valr-replay`` command line. Each command lives in its own module, loaded on use."""

from __future__ import annotations

import importlib

import click

# command name -> "module:attribute"; a module is imported only when its command runs.
COMMANDS: dict[str, str] = {
    "serve": "replay.server.command:serve",
    "show": "replay.show:show",
    "run": "replay.run_command:run",
    "record": "replay.record.command:record",
    "replay": "replay.replay_command:replay",
    "bench": "replay.bench_command:bench",
    "check": "replay.check_command:check",
    "explore": "replay.explore_command:explore",
    "from-log": "replay.from_log_command:from_log",
    "cut": "replay.cut_command:cut",
    "export": "replay.export_command:export",
    "report": "replay.report_command:report",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(module), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="valr-replay")
def main() -> None:
    """valr-replay: a fake VALR exchange that replays and reorders traffic, to make
    connector race conditions reproducible."""
