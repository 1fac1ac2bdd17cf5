"""The item-embedding space users live in, built from the champion's factorization.

Decision (documented in ``docs``-facing terms): the space is always a factorization model's item
vectors (ALS, BPR, PureSVD, NCF, content: anything :class:`~recsys.models.base.HasItemEmbeddings`).
A champion without item vectors (EASE, item-kNN) is not a space: build the space from an ALS or
PureSVD model of the same data and give the champion to the ranker as an item-item scorer
(:meth:`recsys.ranking.ItemItemScorer.from_model`), blended by confidence. On the cold-start curve
that blend beat either part alone (``benchmarks/coldstart_offline.py``).

When the model is an :class:`~recsys.models.ALSRecommender`, the space also keeps ``Y^T Y``, the
regularisation and ``alpha``, so the updater can maintain the exact ALS least-squares fold-in.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from sklearn.cluster import KMeans, MiniBatchKMeans

from recsys.embeddings.metadata import ItemMetadata
from recsys.embeddings.prior import StagePopularity
from recsys.embeddings.projection import ContentProjection
from recsys.errors import ConfigError, DataError
from recsys.models.base import HasItemEmbeddings


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float32), where=norms > 0).astype(
        np.float32, copy=False
    )


def _regions(unit: np.ndarray, n_regions: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    trained = np.flatnonzero(np.abs(unit).sum(axis=1) > 0)
    labels = np.full(unit.shape[0], -1, dtype=np.int32)
    k = min(n_regions, trained.size)
    if k < 1:
        return labels, np.zeros((0, unit.shape[1]), dtype=np.float32)
    if trained.size > 50_000:
        clusterer: KMeans | MiniBatchKMeans = MiniBatchKMeans(
            n_clusters=k, random_state=random_state, n_init=3
        )
    else:
        clusterer = KMeans(n_clusters=k, random_state=random_state, n_init=3)
    labels[trained] = clusterer.fit_predict(unit[trained])
    return labels, unit_rows(np.asarray(clusterer.cluster_centers_, dtype=np.float32))


@dataclass(frozen=True, eq=False)
class EmbeddingSpace:
    """Item vectors plus everything the updater and ranker need about items.

    Build it with :meth:`from_model`. It is immutable: :meth:`add_items` returns a new space, so a
    server can swap the reference atomically while requests use the old one.

    Attributes
    ----------
    vectors, unit : ndarray of shape (n_items, d)
        float32 item vectors and their unit-norm copies (cosine).
    prior : StagePopularity
        Item popularity (overall and per journey stage), the zero-history prior.
    regions, centroids : ndarray
        k-means region of each item (``-1`` for items without a vector) and unit region centres;
        the zero-history page and exploration spread over regions.
    metadata : ItemMetadata or None
    gram, regularization, alpha : ALS fold-in terms (``gram`` is ``None`` for other families).
    projection : ContentProjection or None
        Content features -> vector, for items that arrive with content only.
    fingerprint : str
        Changes whenever vectors change; caches derived from the space are keyed by it.

    Examples
    --------
    >>> import numpy as np
    >>> vectors = np.eye(3, dtype="float32")
    >>> space = EmbeddingSpace.from_vectors(vectors, np.array([3.0, 2.0, 1.0]), n_regions=3)
    >>> space.n_items, space.dim, sorted(set(space.regions.tolist()))
    (3, 3, [0, 1, 2])
    """

    vectors: np.ndarray
    unit: np.ndarray
    prior: StagePopularity
    regions: np.ndarray
    centroids: np.ndarray
    metadata: ItemMetadata | None = None
    gram: np.ndarray | None = None
    regularization: float = 0.0
    alpha: float = 1.0
    projection: ContentProjection | None = None
    fingerprint: str = ""

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_vectors(
        cls,
        vectors: np.ndarray,
        item_popularity: np.ndarray | StagePopularity,
        item_metadata: ItemMetadata | None = None,
        *,
        gram: np.ndarray | None = None,
        regularization: float = 0.0,
        alpha: float = 1.0,
        projection: ContentProjection | None = None,
        n_regions: int = 16,
        random_state: int = 0,
    ) -> EmbeddingSpace:
        """Build a space from raw item vectors (see :meth:`from_model` for the usual path)."""
        matrix = np.ascontiguousarray(vectors, dtype=np.float32)
        if matrix.ndim != 2 or matrix.shape[0] == 0:
            raise DataError(f"item vectors must be a non-empty (n_items, d) matrix, got {matrix.shape}")
        prior = (
            item_popularity
            if isinstance(item_popularity, StagePopularity)
            else StagePopularity.from_counts(np.asarray(item_popularity, dtype=np.float32))
        )
        if prior.n_items != matrix.shape[0]:
            raise DataError(
                f"item popularity covers {prior.n_items} items but there are {matrix.shape[0]} vectors"
            )
        if item_metadata is not None and item_metadata.n_items != matrix.shape[0]:
            raise DataError(f"item metadata covers {item_metadata.n_items} items, vectors {matrix.shape[0]}")
        unit = unit_rows(matrix)
        regions, centroids = _regions(unit, n_regions, random_state)
        return cls(
            vectors=matrix,
            unit=unit,
            prior=prior,
            regions=regions,
            centroids=centroids,
            metadata=item_metadata,
            gram=None if gram is None else np.asarray(gram, dtype=np.float64),
            regularization=float(regularization),
            alpha=float(alpha),
            projection=projection,
            fingerprint=hashlib.blake2b(matrix.tobytes(), digest_size=8).hexdigest(),
        )

    @classmethod
    def from_model(
        cls,
        model: object,
        item_popularity: np.ndarray | StagePopularity,
        item_metadata: ItemMetadata | None = None,
        *,
        item_features: sp.spmatrix | None = None,
        projection_alpha: float = 1.0,
        n_regions: int = 16,
        random_state: int = 0,
    ) -> EmbeddingSpace:
        """The space of a fitted :class:`~recsys.models.base.HasItemEmbeddings` model.

        ``item_features`` (the preprocessing item matrix, row = item index) fits the content
        projection used by :meth:`add_items`. An ALS model also contributes ``Y^T Y``.
        """
        if not isinstance(model, HasItemEmbeddings):
            raise ConfigError(
                f"{type(model).__name__} has no item embeddings, so it cannot define the user space. "
                "Build the space from an ALS or PureSVD model fitted on the same data, and pass this "
                "model to the Ranker as an ItemItemScorer (ItemItemScorer.from_model)"
            )
        vectors = np.asarray(model.item_embeddings, dtype=np.float32)
        gram = None
        regularization, alpha = 0.0, 1.0
        if getattr(model, "family", "") == "als":
            gram = vectors.astype(np.float64).T @ vectors.astype(np.float64)
            regularization = float(model.regularization)  # type: ignore[attr-defined]
            alpha = float(model.alpha)  # type: ignore[attr-defined]
        projection = None
        if item_features is not None:
            projection = ContentProjection.fit(item_features, vectors, alpha=projection_alpha)
        return cls.from_vectors(
            vectors,
            item_popularity,
            item_metadata,
            gram=gram,
            regularization=regularization,
            alpha=alpha,
            projection=projection,
            n_regions=n_regions,
            random_state=random_state,
        )

    # ------------------------------------------------------------------ properties
    @property
    def n_items(self) -> int:
        """Number of items (rows)."""
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension ``d``."""
        return int(self.vectors.shape[1])

    @property
    def has_exact_fold_in(self) -> bool:
        """Whether the ALS Gram matrix is known (exact least-squares fold-in possible)."""
        return self.gram is not None

    def base_inverse(self) -> np.ndarray:
        """``(Y^T Y + regularization I)^-1`` in float64: the empty-history ALS system, inverted."""
        if self.gram is None:
            raise ConfigError("this space has no ALS Gram matrix; build it from an ALSRecommender")
        cache = self.__dict__.get("_base_inverse")
        if cache is None:
            cache = np.linalg.inv(self.gram + self.regularization * np.eye(self.dim))
            object.__setattr__(self, "_base_inverse", cache)
        return np.asarray(cache)

    def region_of(self, vectors: np.ndarray) -> np.ndarray:
        """Region label of each row of ``vectors`` (nearest unit centre; -1 for zero rows)."""
        unit = unit_rows(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
        if self.centroids.shape[0] == 0:
            return np.full(unit.shape[0], -1, dtype=np.int32)
        labels = np.argmax(unit @ self.centroids.T, axis=1).astype(np.int32)
        labels[np.abs(unit).sum(axis=1) == 0] = -1
        return labels

    # ------------------------------------------------------------------ live catalogue changes
    def add_items(
        self,
        item_ids: list[str],
        *,
        vectors: np.ndarray | None = None,
        features: sp.spmatrix | None = None,
        titles: list[str] | None = None,
        categories: list[list[str]] | None = None,
        tags: list[list[str]] | None = None,
    ) -> EmbeddingSpace:
        """A new space with items appended, their vectors given or projected from content.

        New items start at the median popularity. The ALS Gram matrix gains ``y y^T`` per new item, so
        the exact fold-in stays the least-squares solve against the enlarged catalogue.
        """
        if vectors is None:
            if features is None or self.projection is None:
                raise ConfigError(
                    "add_items needs vectors, or features and a space fitted with item_features"
                )
            vectors = self.projection.project(features)
        new = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if new.shape != (len(item_ids), self.dim):
            raise DataError(
                f"new item vectors must have shape ({len(item_ids)}, {self.dim}), got {new.shape}"
            )
        return self._with_vectors(np.vstack([self.vectors, new]), item_ids, titles, categories, tags)

    def update_item(self, item: int, vector: np.ndarray) -> EmbeddingSpace:
        """A new space where ``item`` has ``vector`` (e.g. re-projected after a content edit)."""
        vectors = self.vectors.copy()
        vectors[item] = np.asarray(vector, dtype=np.float32)
        return self._with_vectors(vectors, [], None, None, None)

    def _with_vectors(
        self,
        vectors: np.ndarray,
        item_ids: list[str],
        titles: list[str] | None,
        categories: list[list[str]] | None,
        tags: list[list[str]] | None,
    ) -> EmbeddingSpace:
        count = vectors.shape[0] - self.n_items
        unit = unit_rows(vectors)
        gram = None
        if self.gram is not None:
            gram = vectors.astype(np.float64).T @ vectors.astype(np.float64)
        metadata = self.metadata
        if metadata is not None and count:
            metadata = metadata.with_items(item_ids, titles, categories, tags)
        new_regions = self.region_of(vectors[self.n_items :]) if count else np.zeros(0, np.int32)
        regions = np.concatenate([self.regions, new_regions]).astype(np.int32)
        changed = np.flatnonzero(np.any(vectors[: self.n_items] != self.vectors, axis=1))
        if changed.size:
            regions[changed] = self.region_of(vectors[changed])
        space = replace(
            self,
            vectors=vectors,
            unit=unit,
            prior=self.prior.with_items(count) if count else self.prior,
            regions=regions,
            metadata=metadata,
            gram=gram,
            fingerprint=hashlib.blake2b(vectors.tobytes(), digest_size=8).hexdigest(),
        )
        space.__dict__.pop("_base_inverse", None)
        return space
