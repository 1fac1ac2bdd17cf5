"""Versioned model artifacts and the registry that serves the champion.

* :mod:`.manifest`: what a version records (data fingerprint, config, metrics, code version) and
  the compatibility check that refuses artifacts of another code or data schema;
* :mod:`.artifact`: the version directory (model, item columns, id indices, feature transformers);
* :mod:`.registry`: :class:`Registry`, versions plus an atomically moved ``champion`` pointer.

Examples
--------
>>> from recsys.registry import Registry
>>> # Registry("out/models").load("champion").model.recommend(rows, k=10)
"""

from recsys.registry.artifact import ModelVersion, copy_tree, read_version, write_version
from recsys.registry.manifest import (
    DATA_SCHEMA,
    MANIFEST_FILE,
    SCHEMA_VERSION,
    build_manifest,
    check_compatible,
    code_version,
    data_fingerprint,
    read_manifest,
)
from recsys.registry.registry import CHAMPION, Registry

__all__ = [
    "CHAMPION",
    "DATA_SCHEMA",
    "MANIFEST_FILE",
    "SCHEMA_VERSION",
    "ModelVersion",
    "Registry",
    "build_manifest",
    "check_compatible",
    "code_version",
    "copy_tree",
    "data_fingerprint",
    "read_manifest",
    "read_version",
    "write_version",
]
