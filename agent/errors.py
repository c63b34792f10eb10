"""The error every configuration check raises, shared by the settings modules."""


class ConfigError(ValueError):
    """A configuration value is missing or invalid; the message names the key and the fix."""
