"""Errors that reach the user. Each message says what was wrong and how to fix it."""


class TriadError(Exception):
    """Base class: the CLI prints these without a traceback and exits with ``exit_code``."""

    exit_code = 2


class ConfigError(TriadError):
    """A bad config key or value."""


class DataError(TriadError):
    """Missing, corrupt or invalid data."""

    exit_code = 3


class TransientError(TriadError):
    """A failure worth retrying (network, a busy lock). The flow retries stages that exit 75."""

    exit_code = 75


class TrainingError(TriadError):
    """Training diverged (NaN loss) or cannot resume."""

    exit_code = 4


class NotComparable(Exception):
    """The champion cannot be scored on the new version's test data (another architecture, a head
    that cannot rescore, a model that no longer loads)."""
