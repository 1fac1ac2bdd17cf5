"""Null handling shared by the text vectorizer and the item featurizer (private)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd


def is_missing(value: Any) -> bool:
    """True for ``None``, ``NaN``, ``pd.NA`` and ``NaT``; false for containers and strings."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float) and math.isnan(value)


def clean_strings(column: pd.Series | None, n_rows: int) -> tuple[list[str], int]:
    """Values as ``str`` with missing ones replaced by ``""``; also the number replaced.

    Blank strings count as missing too (CSV cannot tell an empty field from a null one). An absent
    column (``None``) counts as ``n_rows`` missing values.
    """
    if column is None:
        return [""] * n_rows, n_rows
    out: list[str] = []
    n_missing = 0
    for value in column.tolist():
        if is_missing(value) or (isinstance(value, str) and not value.strip()):
            out.append("")
            n_missing += 1
        else:
            out.append(value if isinstance(value, str) else str(value))
    return out, n_missing


def as_string_list(value: Any) -> list[str] | None:
    """One list cell as a list of non-empty, stripped strings; ``None`` when the cell is missing.

    Lists, tuples, numpy arrays (what pyarrow list columns become) and sets are accepted; a bare
    string is a one-element list.
    """
    if isinstance(value, str):
        items: Iterable[Any] = [value]
    elif isinstance(value, list | tuple | set | frozenset | np.ndarray | pd.Series):
        items = value
    elif is_missing(value):
        return None
    else:
        items = [value]
    out = []
    for item in items:
        if is_missing(item):
            continue
        text = (item if isinstance(item, str) else str(item)).strip()
        if text:
            out.append(text)
    return out


def clean_string_lists(column: pd.Series | None, n_rows: int) -> tuple[list[list[str]], int]:
    """Cells as lists of strings with missing cells replaced by ``[]``; also the number replaced."""
    if column is None:
        return [[] for _ in range(n_rows)], n_rows
    out: list[list[str]] = []
    n_missing = 0
    for value in column.tolist():
        cleaned = as_string_list(value)
        if cleaned is None:
            out.append([])
            n_missing += 1
        else:
            out.append(cleaned)
    return out, n_missing
