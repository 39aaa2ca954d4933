"""Data commands: feed the pipeline and read from it."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the data commands to the top-level parser."""
