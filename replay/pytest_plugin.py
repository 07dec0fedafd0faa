"""pytest plugin for valr-replay (registered through the ``pytest11`` entry point).

Scenario collection and the ``valr_server`` / ``valr_scenario`` fixtures arrive with the
scenario runner; until then this module registers nothing.
"""
