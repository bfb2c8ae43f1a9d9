"""Small helpers shared by the ``python -m attiqa`` subcommands.

Bad inputs: every subcommand reports one as a single line ``attiqa <subcommand>: error: <file>:
<cause>`` on stderr, with the exit codes of :mod:`rlisp_common.exit_codes` (3 missing path, 4
permission denied, 5 unreadable or invalid input, 6 refused pickled code, 2 usage, 130 Ctrl-C);
a bug (code 1) keeps its traceback. :func:`reports_errors` does it for a whole ``main``,
:func:`on_file` names the file a failure belongs to, :func:`collected` reports one failed input
of many on a :class:`~rlisp_common.exit_codes.Failures` and goes on with the others.
"""
from __future__ import annotations

import argparse
import functools
import sys
from contextlib import contextmanager
from types import ModuleType

from rlisp_common.exit_codes import EXIT_INTERNAL, EXIT_INTERRUPTED, InputError, describe, report_error

__all__ = ["EXIT_CODES_HELP", "HelpFormatter", "collected", "on_file", "reports_errors", "stage_description"]


EXIT_CODES_HELP = ("exit codes (rlisp_common.exit_codes, docs/attiqa.md): 0 done, 2 usage, 3 missing path, "
                   "4 permission denied, 5 unreadable or invalid input, 6 refused unsafe content (pickled objects "
                   "in a checkpoint), 130 interrupted; a bad input is one line 'error: <file>: <cause>' on stderr")
"""The ``--help`` epilog of every subcommand."""


def stage_description(module: ModuleType) -> str:
    """The first paragraph of a stage module's docstring: the ``--help`` description of its subcommand."""
    return (module.__doc__ or "").split("\n\n")[0]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows defaults, except empty ones (None / False) that the help text already explains."""

    def _get_help_string(self, action):
        if action.default in (None, False) or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


@contextmanager
def on_file(path):
    """A failure inside is a bad input of ``path``: re-raised as an :class:`InputError` naming it
    (one that already names its file keeps it; a bug is re-raised unchanged).

    Example:
        >>> with on_file(args.pretrained):                      # doctest: +SKIP
        ...     model, meta = load_attiqa_model(args.pretrained)
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - classified by describe(); bugs are re-raised as they are
        err = InputError.wrap(exc, path)
        if err is exc:
            raise
        raise err from None


@contextmanager
def collected(failures, path):
    """A bad input raised inside is one line on ``failures`` (a :class:`~rlisp_common.exit_codes.Failures`)
    and the command goes on after the ``with`` block; a bug is re-raised.

    Example:
        >>> for path in paths:                                  # doctest: +SKIP
        ...     with collected(failures, path):
        ...         rows[path] = metric.score_paths([path])[0]
        >>> return failures.code                                # doctest: +SKIP
    """
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - classified by describe(); bugs are re-raised as they are
        if describe(exc)[0] == EXIT_INTERNAL:
            raise
        failures.add(path, exc)


def reports_errors(prog: str):
    """Decorates a subcommand's ``main(argv) -> int``: a bad input raised out of it becomes one line
    and its exit code (:func:`rlisp_common.exit_codes.report_error`), Ctrl-C exit code 130 (as ``rl/train_agent.py``)."""

    def decorate(main):
        @functools.wraps(main)
        def wrapper(argv: list[str] | None = None) -> int:
            try:
                return main(argv)
            except KeyboardInterrupt:
                print(f"\n{prog}: interrupted", file=sys.stderr)
                return EXIT_INTERRUPTED
            except Exception as exc:  # noqa: BLE001 - classified by report_error(); bugs are re-raised
                return report_error(exc, prefix=f"{prog}: error")

        return wrapper

    return decorate
