"""What every command module shares: the settings loader and the common options."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

ConfigOption = typer.Option(
    None, "--config", help="YAML settings file (default: ./mad.yaml when present)."
)
LakeOption = typer.Option(None, help="Lake: a folder or s3://bucket[/prefix].")
ProfileOption = typer.Option(
    None, "--profile", help="Named settings profile: embedded (default) or scale (Kinesis, "
    "S3, Spark, PostgreSQL, Redis), or one defined under 'profiles:' in mad.yaml.")


def use_profile(name: str | None) -> None:
    """Select profile `name` for this command and every process it starts (`MAD_PROFILE`)."""
    import os

    if name is not None:
        os.environ["MAD_PROFILE"] = name


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def settings_from(config: Path | None, **overrides: Any) -> Any:
    """The settings of every layer, with the command's flags (dotted keys) on top; log
    lines go to stderr from here on, timestamped, at `log_level`."""
    import logging

    from mad.config import load_settings

    settings = load_settings(config_file=config, overrides=overrides)
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    for noisy in ("httpx", "httpcore", "botocore", "urllib3", "py4j"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING,
                                              logging.getLevelName(settings.log_level)))
    return settings


def sub_app(help_text: str) -> typer.Typer:
    """A command group: shows its help when called without a command."""
    return typer.Typer(help=help_text, no_args_is_help=True)
