"""The strategy file: schema (``schema``) and loading with line-numbered errors (``loader``)."""

from alpha.config.loader import ConfigError, load_config, load_config_text, load_strategy
from alpha.config.schema import StrategyConfig

__all__ = ["ConfigError", "StrategyConfig", "load_config", "load_config_text", "load_strategy"]
