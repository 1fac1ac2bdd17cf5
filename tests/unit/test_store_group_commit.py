"""Group commit hands every caller its own results, and fails exactly the callers of a failed group."""

from __future__ import annotations

import threading
import time

import pytest

from recsys.store._group_commit import GroupCommit


def test_concurrent_callers_share_transactions_and_get_their_own_results() -> None:
    groups: list[int] = []

    def apply(items: list[int]) -> list[int]:
        groups.append(len(items))
        time.sleep(0.003)  # an fsync
        return [item * 10 for item in items]

    commit: GroupCommit[int, int] = GroupCommit(apply)
    wrong: list[tuple[int, list[int]]] = []

    def caller(worker: int) -> None:
        for n in range(20):
            items = [worker * 1000 + n, worker * 1000 + n + 500]
            results = commit.submit(items)
            if results != [item * 10 for item in items]:
                wrong.append((worker, results))

    threads = [threading.Thread(target=caller, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wrong == []
    assert sum(groups) == 8 * 20 * 2
    assert len(groups) < 8 * 20  # some transactions carried several callers


def test_a_failed_group_fails_its_callers_only() -> None:
    fail = threading.Event()

    def apply(items: list[str]) -> list[str]:
        if fail.is_set():
            raise OSError("disk full")
        return [item.upper() for item in items]

    commit: GroupCommit[str, str] = GroupCommit(apply)
    fail.set()
    with pytest.raises(OSError, match="disk full"):
        commit.submit(["a"])
    fail.clear()
    assert commit.submit(["b", "c"]) == ["B", "C"]
    assert commit.submit([]) == []
