"""Error types for user mistakes. The CLI prints these as one line (no traceback)."""


class UserError(Exception):
    """Base of every error a user can fix; the message names the file, key or value."""


class ConfigError(UserError, ValueError):
    """A config file, key, type or override problem."""


class DataError(UserError, ValueError):
    """A data set problem: a file, line or value that cannot be used."""


class MetricInputError(UserError, ValueError):
    """Inputs a metric cannot be computed from (too few samples, NaN, mismatched shapes)."""


class RegistryError(UserError, KeyError):
    """An unknown registered name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
