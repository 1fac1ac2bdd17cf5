"""Served-page counting off the request path: one background thread, one store write per batch.

A page is counted (journey policy, campaign caps) after it is answered. The counts are best effort
(:class:`~recsys.store.JourneyStore`), so a replica keeps them in memory and a daemon thread writes
what gathered in one call, at most once per ``linger_s``: one transaction for many pages, and no
thread wake-up and store write per request (measured: about 0.4 ms of CPU per page before).

Until its batch is written a page is *pending*: :meth:`ServedRecorder.pending` hands the engine a
user's pending pages, summed (:class:`PendingPages`, kept up to date as pages arrive, so reading it
costs the same however many pages wait), and the engine lays them over the stored counts, so this
replica's next page for the user sees every earlier one at once. Other replicas see a page once its
batch is written (within ``linger_s`` plus the write).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from recsys.store import ServedPage

logger = logging.getLogger("wayfinder.engine")

LINGER_S = 0.05
"""How long the writer lets pages gather after the first one (the lag other replicas may see)."""


@dataclass(slots=True)
class PendingPages:
    """A user's pages not yet written, summed: pages per signal count, exposures per campaign."""

    pages: dict[int, int] = field(default_factory=dict)
    exposures: dict[str, int] = field(default_factory=dict)

    def add(self, page: ServedPage) -> None:
        self.pages[page.signals] = self.pages.get(page.signals, 0) + 1
        for campaign in page.campaign_ids:
            self.exposures[campaign] = self.exposures.get(campaign, 0) + 1

    def merged(self, other: PendingPages | None) -> PendingPages:
        """A new summary of both (``other`` may be ``None``)."""
        out = PendingPages(dict(self.pages), dict(self.exposures))
        if other is not None:
            for signals, count in other.pages.items():
                out.pages[signals] = out.pages.get(signals, 0) + count
            for campaign, count in other.exposures.items():
                out.exposures[campaign] = out.exposures.get(campaign, 0) + count
        return out

    def pages_at(self, signals: int) -> int:
        """Pending pages served while the user's signal count was ``signals``."""
        return self.pages.get(signals, 0)


class ServedRecorder:
    """Keeps :class:`ServedPage` records and writes them in batches from a daemon thread.

    Examples
    --------
    >>> written = []
    >>> recorder = ServedRecorder(written.append)
    >>> recorder.submit(ServedPage("u1", 0, ("spring",)))
    >>> recorder.pending("u1")
    PendingPages(pages={0: 1}, exposures={'spring': 1})
    >>> recorder.close()
    >>> written, recorder.pending("u1")
    ([[ServedPage(user_id='u1', signals=0, campaign_ids=('spring',))]], PendingPages(pages={}, exposures={}))
    """

    def __init__(
        self,
        write: Callable[[list[ServedPage]], object],
        *,
        max_batch: int = 512,
        linger_s: float = LINGER_S,
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._linger_s = linger_s
        self._lock = threading.Lock()
        self._queued: dict[str, list[ServedPage]] = {}  # submitted, not yet taken by the writer
        self._writing: dict[str, list[ServedPage]] = {}  # taken, being written
        self._queued_sums: dict[str, PendingPages] = {}  # the same pages, summed per user
        self._writing_sums: dict[str, PendingPages] = {}
        self._wake = threading.Event()
        self._closing = threading.Event()  # also ends the wait for a batch at once
        self._thread = threading.Thread(target=self._run, name="served-pages", daemon=True)
        self._thread.start()

    def submit(self, page: ServedPage) -> None:
        """Keep one page for the next batch; returns at once."""
        with self._lock:
            self._queued.setdefault(page.user_id, []).append(page)
            summed = self._queued_sums.get(page.user_id)
            if summed is None:
                summed = self._queued_sums[page.user_id] = PendingPages()
            summed.add(page)
        self._wake.set()

    def pending(self, user_id: str) -> PendingPages:
        """The user's pages submitted but not yet written, summed."""
        with self._lock:
            writing, queued = self._writing_sums.get(user_id), self._queued_sums.get(user_id)
            return (writing or PendingPages()).merged(queued)

    def discard(self, user_id: str) -> None:
        """Drop the user's pages not yet taken by the writer (the user was forgotten)."""
        with self._lock:
            self._queued.pop(user_id, None)
            self._queued_sums.pop(user_id, None)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is pending, then stop the thread."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._closing.wait(self._linger_s)  # let the pages of the next few requests join this batch
            with self._lock:
                self._wake.clear()
                self._writing, self._queued = self._queued, {}
                self._writing_sums, self._queued_sums = self._queued_sums, {}
                pages = [page for user_pages in self._writing.values() for page in user_pages]
            for start in range(0, len(pages), self._max_batch):
                try:
                    self._write(pages[start : start + self._max_batch])
                except Exception:  # best effort: a lost count must not kill the thread
                    logger.warning("could not count %d served pages", len(pages), exc_info=True)
            with self._lock:
                self._writing, self._writing_sums = {}, {}
                if self._closing.is_set() and not self._queued:
                    return
