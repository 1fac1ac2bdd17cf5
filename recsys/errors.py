"""The one error tree of Wayfinder.

Hierarchy::

    WayfinderError                 base of every error this project raises on purpose
    ├── ConfigError                a configuration value or CLI argument is invalid
    ├── DataError                  input data cannot be used as a whole
    │   ├── SourceNotFoundError    a path or URI does not exist / is empty
    │   ├── SchemaError            a required column is missing or has an unusable type
    │   └── FormatError            a file is not of the format or layout claimed
    └── ArtifactError              a saved artifact is missing, corrupt or incompatible

Row-level problems (a malformed line, an unknown event type) are *not* errors: such rows are
quarantined with a reason and counted. Errors are for problems that make the whole input unusable;
their message says what was wrong, where (file, row, column where known) and what to do.
"""

from __future__ import annotations


class WayfinderError(Exception):
    """Base class of all errors raised on purpose by Wayfinder."""


class ConfigError(WayfinderError, ValueError):
    """A configuration value or command-line argument is invalid."""


class DataError(WayfinderError):
    """Input data cannot be used.

    Parameters
    ----------
    message:
        What was wrong and what to do about it.
    file, row, column:
        Where the problem is, when known. They are appended to the message.
    """

    def __init__(
        self, message: str, *, file: str | None = None, row: int | None = None, column: str | None = None
    ) -> None:
        self.file = file
        self.row = row
        self.column = column
        where = ", ".join(
            part
            for part in (
                f"file {file}" if file is not None else "",
                f"row {row}" if row is not None else "",
                f"column {column!r}" if column is not None else "",
            )
            if part
        )
        super().__init__(f"{message} ({where})" if where else message)


class SourceNotFoundError(DataError):
    """A path or URI does not exist, or holds no data files."""


class SchemaError(DataError):
    """A required column is missing or has a type that cannot be converted."""


class FormatError(DataError):
    """A file is not of the format or layout it was said to be."""


class ArtifactError(WayfinderError):
    """A saved artifact is missing, corrupt, or incompatible with this code or data."""
