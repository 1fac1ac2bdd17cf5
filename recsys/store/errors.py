"""Errors of the store layer.

Hierarchy (to be merged into :mod:`recsys.errors` by the lead)::

    WayfinderError
    └── StoreError                 the store is unreachable, misconfigured or its data is unusable
        └── ConflictError          a compare-and-set on a user's state version failed: re-read, retry
"""

from __future__ import annotations

from recsys.errors import WayfinderError


class StoreError(WayfinderError):
    """The store cannot be used: unreachable, misconfigured, or holding data this code cannot read.

    The message names the backend and location and says what to do. The original exception, when
    there is one, is chained as ``__cause__``.
    """


class ConflictError(StoreError):
    """A user's state changed since it was read: the compare-and-set on its version failed.

    Nothing was written. Re-read the state with ``get``, re-apply the change and retry.

    Parameters
    ----------
    user_id:
        Whose state was written.
    expected_version:
        The version the caller read and passed to the write.
    actual_version:
        The version in the store at the time of the write (``0``: no state).
    """

    def __init__(self, user_id: str, expected_version: int, actual_version: int) -> None:
        self.user_id = user_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        super().__init__(
            f"state of user {user_id!r} is at version {actual_version}, not the expected "
            f"{expected_version}: re-read it, re-apply the change and retry"
        )
