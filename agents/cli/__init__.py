"""The `privmon` command line: one module per command (``register``, ``run``)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """The console script (imported lazily so that ``agents.cli.options`` stays light)."""
    from privmon.agents.cli.main import main as run

    return run(argv)
