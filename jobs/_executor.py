"""Running a stage's independent pieces as parallel Ray Data tasks."""

from __future__ import annotations

import pickle
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import ray

T = TypeVar("T")
R = TypeVar("R")


class RayDataExecutor:
    """Maps a function over tasks with Ray Data: one block and one task per piece, streamed.

    Results come back as they finish (progress is printed to stderr then) and are returned in task
    order. ``num_cpus`` is the share of a CPU each task reserves.
    """

    def __init__(self, *, num_cpus: float = 1.0, progress: bool = True, label: str = "wayfinder") -> None:
        self._num_cpus = num_cpus
        self._progress = progress
        self._label = label

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], *, stage: str) -> list[R]:
        if not tasks:
            return []
        pieces = list(tasks)

        def run(row: dict[str, Any]) -> dict[str, Any]:
            index = int(row["index"])
            return {"index": index, "result": pickle.dumps(fn(pieces[index]))}

        dataset = ray.data.from_items(
            [{"index": i} for i in range(len(pieces))], override_num_blocks=len(pieces)
        ).map(run, num_cpus=self._num_cpus)
        results: dict[int, R] = {}
        for row in dataset.iter_rows():
            results[int(row["index"])] = pickle.loads(row["result"])
            if self._progress:
                print(f"[{self._label}] {stage}: {len(results)}/{len(pieces)}", file=sys.stderr, flush=True)
        return [results[i] for i in range(len(pieces))]
