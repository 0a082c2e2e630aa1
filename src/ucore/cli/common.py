"""What most commands need: the config loaded from the global options."""

from __future__ import annotations

import argparse

from ucore.foundation.config.loader import LoadedConfig, load_config


def config_from_args(args: argparse.Namespace) -> LoadedConfig:
    return load_config(getattr(args, "config", None), getattr(args, "data_dir", None))
