"""Export options with budgets no export can meet, for the tests of what a failed gate does."""

from __future__ import annotations

from fusembed.export import ExportOptions


def unmeetable(options: ExportOptions, **budgets: float) -> ExportOptions:
    """`options` with `budgets` set past 1. `ExportOptions` refuses such values from users (a
    cosine or an agreement cannot exceed 1), so they are set behind its check."""
    for name, value in budgets.items():
        assert value > 1, "a budget that a lucky run could meet does not test a failed gate"
        object.__setattr__(options, name, value)
    return options
