"""Small helpers shared by the ``python -m attiqa`` subcommands."""
from __future__ import annotations

import argparse
from types import ModuleType

__all__ = ["HelpFormatter", "stage_description"]


def stage_description(module: ModuleType) -> str:
    """The first paragraph of a stage module's docstring: the ``--help`` description of its subcommand."""
    return (module.__doc__ or "").split("\n\n")[0]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except empty ones (None / False) that the help text already explains."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)
