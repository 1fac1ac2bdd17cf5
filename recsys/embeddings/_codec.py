"""Exact, compact JSON encoding of small numpy arrays (base64 of little-endian bytes)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from recsys.errors import ArtifactError


def encode_array(array: np.ndarray) -> dict[str, Any]:
    """A JSON-able dict holding ``array`` bit for bit (dtype, shape, base64 data)."""
    contiguous = np.ascontiguousarray(array)
    little = contiguous.astype(contiguous.dtype.newbyteorder("<"), copy=False)
    return {
        "dtype": little.dtype.str,
        "shape": list(little.shape),
        "data": base64.b64encode(little.tobytes()).decode("ascii"),
    }


def decode_array(document: dict[str, Any]) -> np.ndarray:
    """Inverse of :func:`encode_array`; raises :class:`ArtifactError` on a malformed document."""
    try:
        raw = base64.b64decode(document["data"], validate=True)
        array = np.frombuffer(raw, dtype=np.dtype(document["dtype"]))
        return array.reshape(tuple(int(n) for n in document["shape"])).astype(
            np.dtype(document["dtype"]).newbyteorder("="), copy=True
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"malformed encoded array {str(document)[:80]!r}: {exc}") from exc
