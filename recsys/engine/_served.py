"""Served-page counting off the request path: one background thread, one store write per batch.

A page is counted (journey policy, campaign caps) after it is answered. The counts are best effort
(:class:`~recsys.store.JourneyStore`), so a replica queues them and a daemon thread writes whatever
queued since its last write in one call: one transaction for many pages under load, no thread hop
per request. Other replicas see a page's count once its batch is written (milliseconds).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from recsys.store import ServedPage

logger = logging.getLogger("wayfinder.engine")
_STOP = None


class ServedRecorder:
    """Queues :class:`ServedPage` records and writes them in batches from a daemon thread.

    Examples
    --------
    >>> written = []
    >>> recorder = ServedRecorder(written.append)
    >>> recorder.submit(ServedPage("u1", 0))
    >>> recorder.close()
    >>> written
    [[ServedPage(user_id='u1', signals=0, campaign_ids=())]]
    """

    def __init__(self, write: Callable[[list[ServedPage]], object], *, max_batch: int = 512) -> None:
        self._write = write
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[ServedPage | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="served-pages", daemon=True)
        self._thread.start()

    def submit(self, page: ServedPage) -> None:
        """Queue one page; returns at once."""
        self._queue.put(page)

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is queued, then stop the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            stop = first is _STOP
            batch = [] if first is None else [first]
            while not stop and len(batch) < self._max_batch:
                try:
                    page = self._queue.get_nowait()
                except queue.Empty:
                    break
                if page is None:
                    stop = True
                else:
                    batch.append(page)
            if batch:
                try:
                    self._write(batch)
                except Exception:  # best effort: a lost count must not kill the thread
                    logger.warning("could not count %d served pages", len(batch), exc_info=True)
            if stop:
                return
