"""Group commit: concurrent writers of one process share a transaction, and so one fsync.

With ``synchronous=FULL`` every commit costs an fsync (milliseconds on many disks), and one write
transaction runs at a time, so threads that each commit alone queue behind each other's fsyncs.
Here the first waiting thread becomes the *leader*: it takes every request queued so far, applies
them in one transaction, and hands each its results; the others wake up done. No request is
acknowledged before the transaction holding it has committed, and a failed transaction fails every
request in it (none of which was committed). A lone writer pays only an uncontended lock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class _Request(Generic[Item, Result]):
    __slots__ = ("done", "error", "items", "results")

    def __init__(self, items: Sequence[Item]) -> None:
        self.items = items
        self.results: list[Result] = []
        self.error: BaseException | None = None
        self.done = False


class GroupCommit(Generic[Item, Result]):
    """Runs ``apply(items) -> results`` (one transaction, one result per item) for many callers at once."""

    def __init__(self, apply: Callable[[list[Item]], list[Result]]) -> None:
        self._apply = apply
        self._leader = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Request[Item, Result]] = []

    def submit(self, items: Sequence[Item]) -> list[Result]:
        """Apply ``items`` in a transaction shared with concurrent callers; return their results."""
        request: _Request[Item, Result] = _Request(items)
        with self._queue_lock:
            self._queue.append(request)
        with self._leader:
            if not request.done:  # no earlier leader took it: lead everything queued so far
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                try:
                    results = self._apply([item for queued in batch for item in queued.items])
                    start = 0
                    for queued in batch:
                        queued.results = results[start : start + len(queued.items)]
                        start += len(queued.items)
                except BaseException as exc:
                    for queued in batch:
                        queued.error = exc
                finally:
                    for queued in batch:
                        queued.done = True
        if request.error is not None:
            raise request.error
        return request.results
