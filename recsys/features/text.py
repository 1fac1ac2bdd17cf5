"""Tokenising and TF-IDF vectorising item text (title, text and tags).

Words from ``title`` and ``text`` go through :class:`Tokenizer`: Unicode NFKC normalisation and
case folding, word tokens (letters and digits of any script; apostrophes inside a word are dropped so
"don't" is one token), English stop words removed, Snowball (Porter2) stems. Each tag is one whole
token, ``"#" + normalised tag`` (``"Sci-Fi "`` -> ``"#sci-fi"``), so tags form their own vocabulary
block and never collide with words.

:class:`ItemTextVectorizer` fits scikit-learn's ``TfidfVectorizer`` on these tokens, multiplies the
tag columns by ``tag_weight`` and L2-normalises each row.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import snowballstemmer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer
from sklearn.preprocessing import normalize

from recsys.data.schema import TAGS, TEXT, TITLE
from recsys.features._clean import clean_string_lists, clean_strings

STOP_WORDS: frozenset[str] = frozenset(ENGLISH_STOP_WORDS)
"""scikit-learn's English stop-word list (318 words), matched before stemming."""

TAG_PREFIX = "#"

_WORD = re.compile(r"[^\W_]+")
_INNER_APOSTROPHE = re.compile(r"(?<=\w)['\u2019](?=\w)")
_SPACES = re.compile(r"\s+")
_STEM_CACHE_LIMIT = 200_000

TextDocument = tuple[str, str, Sequence[str]]
"""What the analyzer receives for one item: ``(title, text, tags)``."""


def normalize_text(text: str) -> str:
    """NFKC-normalise and case-fold ``text`` (``"Straße"`` -> ``"strasse"``)."""
    return unicodedata.normalize("NFKC", text).casefold()


def tag_token(tag: str) -> str:
    """The vocabulary token of one tag: ``"#"`` + the normalised tag, inner spaces collapsed."""
    return TAG_PREFIX + _SPACES.sub(" ", normalize_text(tag)).strip()


class Tokenizer:
    """Lower-cased, stop-word-free, stemmed word tokens of a text.

    Parameters
    ----------
    stem:
        Reduce words to their Snowball (Porter2) English stem.
    stop_words:
        Words dropped (compared after case folding, before stemming).
    min_length:
        Shorter tokens are dropped.
    keep_numbers:
        Keep tokens made only of digits (years, sizes); off by default.

    Examples
    --------
    >>> Tokenizer()("The runner was running; she runs!")
    ['runner', 'run', 'run']
    """

    def __init__(
        self,
        *,
        stem: bool = True,
        stop_words: Iterable[str] = STOP_WORDS,
        min_length: int = 2,
        keep_numbers: bool = False,
    ) -> None:
        self.stem = stem
        self.stop_words = frozenset(stop_words)
        self.min_length = min_length
        self.keep_numbers = keep_numbers
        self._stemmer: Any = None
        self._cache: dict[str, str] = {}

    def __call__(self, text: str) -> list[str]:
        words = _WORD.findall(_INNER_APOSTROPHE.sub("", normalize_text(text)))
        kept = [
            word
            for word in words
            if len(word) >= self.min_length
            and word not in self.stop_words
            and (self.keep_numbers or not word.isdigit())
        ]
        return [self._stem(word) for word in kept] if self.stem else kept

    def _stem(self, word: str) -> str:
        stemmed = self._cache.get(word)
        if stemmed is None:
            if self._stemmer is None:
                self._stemmer = snowballstemmer.stemmer("english")
            stemmed = str(self._stemmer.stemWord(word))
            if len(self._cache) >= _STEM_CACHE_LIMIT:
                self._cache.clear()
            self._cache[word] = stemmed
        return stemmed

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_stemmer"] = None
        state["_cache"] = {}
        return state


class ItemAnalyzer:
    """The ``analyzer`` given to ``TfidfVectorizer``: one ``(title, text, tags)`` -> tokens."""

    def __init__(self, tokenizer: Tokenizer | None = None) -> None:
        self.tokenizer = tokenizer if tokenizer is not None else Tokenizer()

    def __call__(self, document: TextDocument) -> list[str]:
        title, text, tags = document
        tokens = self.tokenizer(title) + self.tokenizer(text)
        tokens.extend(token for token in map(tag_token, tags) if len(token) > len(TAG_PREFIX))
        return tokens


def item_documents(items: pd.DataFrame) -> tuple[list[TextDocument], dict[str, int]]:
    """``(title, text, tags)`` per row with nulls replaced, and how many of each were null."""
    n = len(items)
    titles, n_title = clean_strings(items.get(TITLE), n)
    texts, n_text = clean_strings(items.get(TEXT), n)
    tags, n_tags = clean_string_lists(items.get(TAGS), n)
    documents: list[TextDocument] = list(zip(titles, texts, tags, strict=True))
    return documents, {TITLE: n_title, TEXT: n_text, TAGS: n_tags}


class ItemTextVectorizer:
    """TF-IDF vectors of items' title + text + tags, rows L2-normalised, float32 CSR.

    Parameters
    ----------
    min_df, max_df, max_features, sublinear_tf:
        As in scikit-learn's ``TfidfVectorizer`` (``sublinear_tf`` uses ``1 + log(tf)``).
    tag_weight:
        Multiplier of the tag columns' TF-IDF values before row normalisation; 1.0 treats a tag
        like a word, larger values make shared tags count more in cosine similarity.
    keep_numbers:
        Keep all-digit word tokens (see :class:`Tokenizer`).

    Attributes
    ----------
    vocabulary_:
        Token -> column index.
    idf_:
        Inverse document frequency of each column (float64).
    column_weights_:
        ``idf_`` times ``tag_weight`` on tag columns: the per-column factor applied to the term
        frequencies.

    Examples
    --------
    >>> items = pd.DataFrame({"title": ["Space opera", "Cooking at home"], "tags": [["sci-fi"], []]})
    >>> vec = ItemTextVectorizer().fit(items)
    >>> vec.vocabulary
    ['#sci-fi', 'cook', 'home', 'opera', 'space']
    >>> vec.transform(items).shape
    (2, 5)
    """

    def __init__(
        self,
        *,
        min_df: float | int = 1,
        max_df: float | int = 1.0,
        max_features: int | None = None,
        sublinear_tf: bool = True,
        tag_weight: float = 2.0,
        keep_numbers: bool = False,
    ) -> None:
        self.min_df = min_df
        self.max_df = max_df
        self.max_features = max_features
        self.sublinear_tf = sublinear_tf
        self.tag_weight = tag_weight
        self.keep_numbers = keep_numbers

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments, as a JSON-friendly dict."""
        return {
            "min_df": self.min_df,
            "max_df": self.max_df,
            "max_features": self.max_features,
            "sublinear_tf": self.sublinear_tf,
            "tag_weight": self.tag_weight,
            "keep_numbers": self.keep_numbers,
        }

    def _analyzer(self) -> ItemAnalyzer:
        return ItemAnalyzer(Tokenizer(keep_numbers=self.keep_numbers))

    def _tfidf(self, vocabulary: dict[str, int] | None = None) -> TfidfVectorizer:
        return TfidfVectorizer(
            analyzer=self._analyzer(),
            min_df=self.min_df,
            max_df=self.max_df,
            max_features=self.max_features,
            sublinear_tf=self.sublinear_tf,
            norm=None,
            vocabulary=vocabulary,
        )

    def fit(self, items: pd.DataFrame) -> ItemTextVectorizer:
        """Learn the vocabulary and IDF from a catalogue; return ``self``."""
        documents, _ = item_documents(items)
        tfidf = self._tfidf()
        try:
            tfidf.fit(documents)
        except ValueError as exc:
            if "empty vocabulary" not in str(exc) and "no terms remain" not in str(exc):
                raise
            self._set_fitted([], np.zeros(0))
            return self
        vocabulary = sorted(tfidf.vocabulary_, key=tfidf.vocabulary_.__getitem__)
        self._set_fitted(vocabulary, np.asarray(tfidf.idf_, dtype=np.float64), tfidf)
        return self

    def _set_fitted(
        self, vocabulary: list[str], idf: np.ndarray, tfidf: TfidfVectorizer | None = None
    ) -> None:
        """Install fitted state (also used when loading an artifact)."""
        if len(vocabulary) != len(idf):
            raise ValueError(f"vocabulary has {len(vocabulary)} tokens but idf has {len(idf)} values")
        self.vocabulary_ = {token: index for index, token in enumerate(vocabulary)}
        self.idf_ = np.asarray(idf, dtype=np.float64)
        is_tag = np.fromiter((t.startswith(TAG_PREFIX) for t in vocabulary), bool, len(vocabulary))
        self._tag_multiplier_ = np.where(is_tag, self.tag_weight, 1.0)
        self.column_weights_ = self._tag_multiplier_ * self.idf_
        if tfidf is None and vocabulary:
            tfidf = self._tfidf(self.vocabulary_)
            tfidf.idf_ = self.idf_
        self._tfidf_ = tfidf

    @property
    def vocabulary(self) -> list[str]:
        """Tokens in column order (words are stems, tags start with ``"#"``)."""
        self._check_fitted()
        return sorted(self.vocabulary_, key=self.vocabulary_.__getitem__)

    def _check_fitted(self) -> None:
        if not hasattr(self, "vocabulary_"):
            raise RuntimeError("ItemTextVectorizer is not fitted; call fit(items) first")

    def transform(self, items: pd.DataFrame) -> sp.csr_matrix:
        """``(len(items), len(vocabulary))`` float32 CSR; unknown tokens are ignored."""
        documents, _ = item_documents(items)
        return self.transform_documents(documents)

    def transform_documents(self, documents: Sequence[TextDocument]) -> sp.csr_matrix:
        """As :meth:`transform`, from already cleaned ``(title, text, tags)`` tuples."""
        self._check_fitted()
        if self._tfidf_ is None:
            return sp.csr_matrix((len(documents), 0), dtype=np.float32)
        tfidf = self._tfidf_.transform(list(documents))
        weighted = sp.csr_matrix(tfidf.multiply(self._tag_multiplier_))
        out = normalize(weighted, norm="l2", axis=1, copy=False).astype(np.float32)
        out.sort_indices()
        return sp.csr_matrix(out)

    def fit_transform(self, items: pd.DataFrame) -> sp.csr_matrix:
        """:meth:`fit` then :meth:`transform` on the same catalogue."""
        return self.fit(items).transform(items)
