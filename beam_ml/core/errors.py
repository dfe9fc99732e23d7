"""The error every job raises for a bad option, before any work starts."""
from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value is wrong; the message starts with the option's name (`--name: ...`)."""

    def __init__(self, name: str, message: str):
        super().__init__(f"--{name}: {message}")
        self.option = name
