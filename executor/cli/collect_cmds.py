"""evac commands: placeholder until this family of commands is implemented."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Adds this module's commands to the evac app."""
