"""Errors a user can act on.

Every expected failure (bad YAML, malformed arch string, missing data, corrupt checkpoint, bad
flag) raises a subclass of :class:`NASError` whose message says what was wrong, where, and what is
allowed. The CLI turns these into one line on stderr and exit code 2; anything else is a bug and
keeps its traceback.
"""


class NASError(Exception):
    """Base class of the errors the CLI reports as one clear line (exit code 2)."""


class SpaceError(NASError, ValueError):
    """A search-space YAML file is invalid."""


class ArchError(NASError, ValueError):
    """An architecture string or object does not belong to the search space."""


class DataError(NASError):
    """A data set is missing or malformed."""


class CheckpointError(NASError):
    """A checkpoint (or other saved artefact) is missing, corrupt, or of another format."""


class ConfigError(NASError, ValueError):
    """A config value, recipe key or command-line flag is invalid."""
