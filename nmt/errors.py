"""Errors the user can fix. The CLI prints their message as one line, without a traceback."""


class NmtError(Exception):
    """A problem with the user's input, files or environment; the message says how to fix it."""

    exit_code = 1


class ConfigError(NmtError):
    """The configuration file or a --set override is invalid."""


class DataError(NmtError):
    """A dataset cannot be found, read or downloaded."""


class RunDirError(NmtError):
    """A run directory is missing, incomplete or incompatible with the request."""
