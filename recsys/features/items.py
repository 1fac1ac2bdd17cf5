"""Item features: the cleaned catalogue and the item feature matrix.

Feature matrix layout (CSR, float32, one row per input item, columns named by ``feature_names``)::

    [ tfidf:<token> ... | cat:<category> ... | num:<attr> ... ]
      text block          category block       numeric block

* text block: :class:`~recsys.features.text.ItemTextVectorizer` rows (L2-normalised) x ``text_weight``;
* category block: multi-hot of the fitted categories (sorted), each row L2-normalised when
  ``normalize_blocks`` (so an item with five categories does not outweigh its text), x ``category_weight``;
* numeric block: each numeric attribute min-max scaled to ``[0, 1]`` with the fitted range (values
  outside it are clipped), then ``num:<attr>_missing`` indicators when ``missing_indicators``,
  x ``numeric_weight``.

Cleaning and imputation (the ``items`` frame of :class:`ItemFeatures`): missing ``title``/``text``
-> ``""``; missing ``categories``/``tags`` -> ``[]``; missing numeric attribute -> the fitted median,
with ``<attr>_missing`` (0/1) added; ``<attr>_minmax`` and ``<attr>_z`` (``(x - mean) / std``,
population std) added from the fitted statistics. Counts of imputed values per field come with it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from recsys.data.schema import CATEGORIES, CREATED_AT, ITEM_ID, TAGS, TEXT, TITLE
from recsys.errors import SchemaError
from recsys.features._clean import clean_string_lists
from recsys.features.text import ItemTextVectorizer, item_documents

_CORE_COLUMNS = frozenset({ITEM_ID, TITLE, TEXT, CATEGORIES, TAGS, CREATED_AT})
_DERIVED_SUFFIXES = ("_missing", "_minmax", "_z")

TEXT_PREFIX = "tfidf:"
CATEGORY_PREFIX = "cat:"
NUMERIC_PREFIX = "num:"


@dataclass(frozen=True)
class NumericStats:
    """Fitted statistics of one numeric attribute (computed on its non-missing values)."""

    median: float
    min: float
    max: float
    mean: float
    std: float

    @classmethod
    def of(cls, values: np.ndarray) -> NumericStats:
        observed = values[~np.isnan(values)]
        if observed.size == 0:
            return cls(median=0.0, min=0.0, max=0.0, mean=0.0, std=1.0)
        std = float(observed.std())
        return cls(
            median=float(np.median(observed)),
            min=float(observed.min()),
            max=float(observed.max()),
            mean=float(observed.mean()),
            std=std if std > 0.0 else 1.0,
        )

    def minmax(self, values: np.ndarray) -> np.ndarray:
        """Scaled to ``[0, 1]`` by the fitted range, clipped; 0 for a constant attribute."""
        span = self.max - self.min
        if span <= 0.0:
            return np.zeros_like(values)
        return np.clip((values - self.min) / span, 0.0, 1.0)

    def zscore(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std


@dataclass(frozen=True)
class ItemFeatures:
    """What :meth:`ItemFeaturizer.transform` returns.

    Attributes
    ----------
    matrix:
        ``(len(items), len(feature_names))`` float32 CSR, rows in input order.
    items:
        The cleaned catalogue (input columns, imputed, plus the derived numeric columns).
    feature_names:
        Name of every matrix column.
    imputed:
        Number of values imputed per field (``title``, ``text``, ``categories``, ``tags``, attributes).
    unseen_categories:
        Categories not seen at fit time (ignored in the matrix) and how many items carried each.
    """

    matrix: sp.csr_matrix
    items: pd.DataFrame
    feature_names: list[str]
    imputed: dict[str, int] = field(default_factory=dict)
    unseen_categories: dict[str, int] = field(default_factory=dict)

    @property
    def n_unseen_categories(self) -> int:
        """Total occurrences of categories unknown to the fitted featurizer."""
        return sum(self.unseen_categories.values())


class ItemFeaturizer:
    """Fits on the item catalogue; turns any catalogue rows (also new items) into features.

    Parameters
    ----------
    text_weight, category_weight, numeric_weight:
        Multipliers of the three blocks of the feature matrix.
    normalize_blocks:
        L2-normalise each row of the category block (the text block always is).
    missing_indicators:
        Add ``num:<attr>_missing`` columns to the numeric block.
    numeric_columns:
        Numeric attributes to use; ``None`` takes every float column outside the core schema
        (and not starting with ``_``).
    ignore_categories:
        Category values meaning "none" (MovieLens writes ``"(no genres listed)"``).
    min_df, max_df, max_features, sublinear_tf, tag_weight, keep_numbers:
        Passed to :class:`~recsys.features.text.ItemTextVectorizer`.

    Attributes
    ----------
    text_vectorizer_, categories_, numeric_columns_, numeric_stats_, imputation_counts_, n_items_

    Examples
    --------
    >>> items = pd.DataFrame({
    ...     "item_id": ["a", "b"], "title": ["Red shoes", None],
    ...     "categories": [["shoes"], ["hats", "sale"]], "price": [10.0, np.nan]})
    >>> result = ItemFeaturizer().fit_transform(items)
    >>> result.feature_names
    ['tfidf:red', 'tfidf:shoe', 'cat:hats', 'cat:sale', 'cat:shoes', 'num:price']
    >>> result.imputed["title"], result.imputed["price"], result.items["price"].tolist()
    (1, 1, [10.0, 10.0])
    """

    def __init__(
        self,
        *,
        text_weight: float = 1.0,
        category_weight: float = 1.0,
        numeric_weight: float = 0.5,
        normalize_blocks: bool = True,
        missing_indicators: bool = False,
        numeric_columns: Sequence[str] | None = None,
        ignore_categories: Sequence[str] = ("(no genres listed)",),
        min_df: float | int = 1,
        max_df: float | int = 1.0,
        max_features: int | None = None,
        sublinear_tf: bool = True,
        tag_weight: float = 2.0,
        keep_numbers: bool = False,
    ) -> None:
        self.text_weight = text_weight
        self.category_weight = category_weight
        self.numeric_weight = numeric_weight
        self.normalize_blocks = normalize_blocks
        self.missing_indicators = missing_indicators
        self.numeric_columns = numeric_columns
        self.ignore_categories = ignore_categories
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.tag_weight = tag_weight
        self.keep_numbers = keep_numbers

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as a JSON-friendly dict."""
        params = dict(vars(self))
        params = {key: value for key, value in params.items() if not key.endswith("_")}
        if params["numeric_columns"] is not None:
            params["numeric_columns"] = list(params["numeric_columns"])
        params["ignore_categories"] = list(params["ignore_categories"])
        return params

    # ----------------------------------------------------------------------------------- fit
    def fit(self, items: pd.DataFrame) -> ItemFeaturizer:
        """Learn vocabulary, categories and numeric statistics from the catalogue; return ``self``."""
        _require_item_id(items)
        self.text_vectorizer_ = ItemTextVectorizer(
            min_df=self.min_df,
            max_df=self.max_df,
            max_features=self.max_features,
            sublinear_tf=self.sublinear_tf,
            tag_weight=self.tag_weight,
            keep_numbers=self.keep_numbers,
        ).fit(items)
        categories, _ = clean_string_lists(items.get(CATEGORIES), len(items))
        ignored = set(self.ignore_categories)
        self.categories_ = sorted({c for row in categories for c in row} - ignored)
        self.numeric_columns_ = (
            list(self.numeric_columns) if self.numeric_columns is not None else _float_columns(items)
        )
        self.numeric_stats_ = {name: NumericStats.of(_numeric(items, name)) for name in self.numeric_columns_}
        self.n_items_ = len(items)
        self.imputation_counts_ = self.transform(items).imputed
        return self

    def _set_fitted(
        self,
        text_vectorizer: ItemTextVectorizer,
        categories: list[str],
        numeric_stats: dict[str, NumericStats],
        n_items: int,
        imputation_counts: dict[str, int],
    ) -> None:
        """Install fitted state (used when loading an artifact)."""
        self.text_vectorizer_ = text_vectorizer
        self.categories_ = list(categories)
        self.numeric_columns_ = list(numeric_stats)
        self.numeric_stats_ = dict(numeric_stats)
        self.n_items_ = n_items
        self.imputation_counts_ = dict(imputation_counts)

    def _check_fitted(self) -> None:
        if not hasattr(self, "numeric_stats_"):
            raise RuntimeError("ItemFeaturizer is not fitted; call fit(items) first")

    @property
    def feature_names(self) -> list[str]:
        """Column names of the feature matrix, in order (see the module docstring)."""
        self._check_fitted()
        names = [TEXT_PREFIX + token for token in self.text_vectorizer_.vocabulary]
        names += [CATEGORY_PREFIX + category for category in self.categories_]
        names += [NUMERIC_PREFIX + name for name in self.numeric_columns_]
        if self.missing_indicators:
            names += [f"{NUMERIC_PREFIX}{name}_missing" for name in self.numeric_columns_]
        return names

    @property
    def block_slices(self) -> dict[str, slice]:
        """Column range of each block: ``"text"``, ``"categories"``, ``"numeric"``."""
        self._check_fitted()
        n_text = len(self.text_vectorizer_.vocabulary_)
        n_cat = len(self.categories_)
        n_num = len(self.numeric_columns_) * (2 if self.missing_indicators else 1)
        return {
            "text": slice(0, n_text),
            "categories": slice(n_text, n_text + n_cat),
            "numeric": slice(n_text + n_cat, n_text + n_cat + n_num),
        }

    # ----------------------------------------------------------------------------- transform
    def transform(self, items: pd.DataFrame) -> ItemFeatures:
        """Clean, impute and featurize any catalogue rows, including items unseen at fit time."""
        self._check_fitted()
        _require_item_id(items)
        n = len(items)
        documents, imputed = item_documents(items)
        categories, imputed[CATEGORIES] = clean_string_lists(items.get(CATEGORIES), n)

        cleaned = items.copy()
        cleaned[TITLE] = [doc[0] for doc in documents]
        cleaned[TEXT] = [doc[1] for doc in documents]
        cleaned[CATEGORIES] = categories
        cleaned[TAGS] = [list(doc[2]) for doc in documents]

        numeric_blocks: list[np.ndarray] = []
        indicator_blocks: list[np.ndarray] = []
        for name in self.numeric_columns_:
            stats = self.numeric_stats_[name]
            values = _numeric(items, name)
            missing = np.isnan(values)
            imputed[name] = int(missing.sum())
            values = np.where(missing, stats.median, values)
            minmax = stats.minmax(values)
            cleaned[name] = values
            cleaned[f"{name}_missing"] = missing.astype(np.int8)
            cleaned[f"{name}_minmax"] = minmax
            cleaned[f"{name}_z"] = stats.zscore(values)
            numeric_blocks.append(minmax)
            indicator_blocks.append(missing.astype(np.float64))

        category_block, unseen = self._category_block(categories)
        text_block = self.text_vectorizer_.transform_documents(documents)
        numeric = np.column_stack(numeric_blocks) if numeric_blocks else np.zeros((n, 0))
        if self.missing_indicators and indicator_blocks:
            numeric = np.hstack([numeric, np.column_stack(indicator_blocks)])
        matrix = sp.hstack(
            [
                text_block * self.text_weight,
                category_block * self.category_weight,
                sp.csr_matrix(numeric * self.numeric_weight),
            ],
            format="csr",
            dtype=np.float32,
        )
        matrix.eliminate_zeros()
        return ItemFeatures(
            matrix=sp.csr_matrix(matrix),
            items=cleaned,
            feature_names=self.feature_names,
            imputed=imputed,
            unseen_categories=dict(unseen),
        )

    def fit_transform(self, items: pd.DataFrame) -> ItemFeatures:
        """:meth:`fit` then :meth:`transform` on the same catalogue."""
        return self.fit(items).transform(items)

    def _category_block(self, categories: list[list[str]]) -> tuple[sp.csr_matrix, Counter[str]]:
        index = {category: column for column, category in enumerate(self.categories_)}
        ignored = set(self.ignore_categories)
        unseen: Counter[str] = Counter()
        indptr = [0]
        indices: list[int] = []
        for row in categories:
            columns = set()
            for category in row:
                column = index.get(category)
                if column is not None:
                    columns.add(column)
                elif category not in ignored:
                    unseen[category] += 1
            indices.extend(sorted(columns))
            indptr.append(len(indices))
        block = sp.csr_matrix(
            (np.ones(len(indices), dtype=np.float64), np.asarray(indices, dtype=np.int64), indptr),
            shape=(len(categories), len(self.categories_)),
        )
        if self.normalize_blocks and block.shape[1] > 0:
            block = sp.csr_matrix(normalize(block, norm="l2", axis=1))
        return block, unseen


def _require_item_id(items: pd.DataFrame) -> None:
    if ITEM_ID not in items.columns:
        raise SchemaError(
            f"the item catalogue needs an {ITEM_ID!r} column; got columns {list(items.columns)}",
            column=ITEM_ID,
        )


def _float_columns(items: pd.DataFrame) -> list[str]:
    """Float columns that are numeric attributes (not core, bookkeeping or derived columns)."""
    return [
        str(name)
        for name in items.columns
        if str(name) not in _CORE_COLUMNS
        and not str(name).startswith("_")
        and not str(name).endswith(_DERIVED_SUFFIXES)
        and pd.api.types.is_float_dtype(items[name].dtype)
    ]


def _numeric(items: pd.DataFrame, name: str) -> np.ndarray:
    """An attribute as float64 with NaN for missing (an absent column is all missing)."""
    if name not in items.columns:
        return np.full(len(items), np.nan)
    values = pd.to_numeric(items[name], errors="coerce")
    return np.asarray(values.astype("float64").to_numpy(na_value=np.nan), dtype=np.float64)
