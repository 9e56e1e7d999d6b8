"""What every command module shares: the settings loader and the common options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

ConfigOption = typer.Option(
    None, "--config", help="YAML settings file (default: ./mad.yaml when present)."
)
LakeOption = typer.Option(None, help="Lake: a folder or s3://bucket[/prefix].")


def settings_from(config: Path | None, **overrides: Any) -> Any:
    """The settings of every layer, with the command's flags (dotted keys) on top."""
    from mad.config import load_settings

    return load_settings(config_file=config, overrides=overrides)


def sub_app(help_text: str) -> typer.Typer:
    """A command group: shows its help when called without a command."""
    return typer.Typer(help=help_text, no_args_is_help=True)
