"""The Serve application's configuration: :class:`ServingArgs` and what a replica builds from it.

``build_app`` (``serving/app.py``) validates a :class:`ServingArgs`; each replica builds its
:class:`~recsys.engine.Engine` (:func:`make_engine`) and experiment runtime (:func:`make_experiments`)
from it. Relative paths resolve against the project root, so every replica finds the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path as FilePath
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from recsys.embeddings import UpdaterConfig
from recsys.engine import Engine, load_bundle
from recsys.engine.versions import resolve_serving_bundle
from recsys.experiments import Experiment, Variant
from recsys.ranking import RankerConfig
from recsys.store import open_store
from serving.auth import AuthConfig
from serving.experiments import ExperimentRuntime, validate_experiments, variant_settings
from serving.metrics import model_identity
from serving.privacy import PrivacyConfig

PROJECT_ROOT = FilePath(__file__).resolve().parents[1]


class Autoscaling(BaseModel):
    """Serve autoscaling of one deployment: between ``min_replicas`` and ``max_replicas``, Serve adds
    replicas while the ongoing requests per replica (averaged over ``look_back_period_s``) stay above
    ``target_ongoing_requests`` for ``upscale_delay_s``, and removes them once below it for
    ``downscale_delay_s``. Every replica loads the bundle and reads the shared store, so a new one
    answers like the others (read-your-writes holds across them).

    Examples
    --------
    >>> replica_options(Autoscaling(max_replicas=4))["autoscaling_config"]["max_replicas"]
    4
    """

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(
        default=1, ge=1, description="never fewer (not 0: a first request would wait for a bundle load)"
    )
    max_replicas: int = Field(ge=1, description="never more; about one per core the deployment may use")
    target_ongoing_requests: float = Field(
        default=4.0, gt=0, description="requests in flight per replica that Serve scales towards"
    )
    metrics_interval_s: float = Field(default=10.0, gt=0, description="how often the load is sampled")
    look_back_period_s: float = Field(
        default=30.0, gt=0, description="window the load is averaged over (longer than metrics_interval_s)"
    )
    upscale_delay_s: float = Field(default=30.0, ge=0, description="load above target this long: add")
    downscale_delay_s: float = Field(default=600.0, ge=0, description="load below target this long: remove")

    @model_validator(mode="after")
    def _ordered(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})")
        if self.look_back_period_s <= self.metrics_interval_s:
            raise ValueError(
                f"look_back_period_s ({self.look_back_period_s}) must exceed metrics_interval_s "
                f"({self.metrics_interval_s}): the window must hold more than one sample"
            )
        return self


Replicas = Annotated[int, Field(ge=1)] | Autoscaling
"""A deployment's replicas: a fixed count, or an :class:`Autoscaling` range."""


def replica_options(replicas: int | Autoscaling) -> dict[str, object]:
    """Serve deployment options (``Deployment.options(**...)``) for ``replicas``: ``num_replicas``,
    or an ``autoscaling_config`` (never both: Serve refuses them together)."""
    if isinstance(replicas, Autoscaling):
        return {"autoscaling_config": replicas.model_dump()}
    return {"num_replicas": replicas}


class ServingArgs(BaseModel):
    """Arguments of :func:`build_app` (the ``args`` of the Serve config's application)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    bundle: str = Field(description="serving bundle directory (wayfinder pipeline writes out/bundle)")
    store_url: str = Field(
        default="sqlite:///out/store.db",
        description="sqlite:///relative.db, sqlite:////absolute.db or redis://host:port/db",
    )
    model_version: str | None = Field(
        default=None,
        description="with a bundle registry as `bundle` (out/bundles): a version (v0002) or 'champion' "
        "(the default); swapped in place through the deployments' user_config",
    )
    gateway_replicas: Replicas = Field(
        default=1, description="ingress + ranker replicas: a count, or an autoscaling range (Autoscaling)"
    )
    updater_replicas: Replicas = Field(
        default=1, description="event-applying replicas: a count, or an autoscaling range (Autoscaling)"
    )
    updater_timeout_s: float = Field(
        default=15.0, gt=0, description="answer 503 when the updater has not acknowledged events by then"
    )
    updater: UpdaterConfig = Field(default_factory=UpdaterConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)
    event_path: Literal["gateway", "updater"] = Field(
        default="gateway",
        description="where POST /v1/events is applied: in the gateway (no hop, batched; the faster, "
        "see BENCHMARKS.md) or through a handle call to the EmbeddingUpdater deployment",
    )
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API keys; none configured: open API")
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig, description="user-id pseudonymisation")
    experiments: list[Experiment] = Field(
        default_factory=list, description="A/B/n experiments; at most one enabled (README: A/B testing)"
    )

    @model_validator(mode="after")
    def _valid_experiments(self) -> ServingArgs:
        validate_experiments(self.experiments, self.ranker, self.updater)
        return self

    def resolved(self) -> ServingArgs:
        """Relative paths taken from the project root, so every replica finds the same files, and the
        keys file snapshotted (see :class:`~serving.auth.AuthConfig`)."""
        bundle = FilePath(self.bundle)
        url = self.store_url
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = "sqlite:///" + str(PROJECT_ROOT / url.removeprefix("sqlite:///"))
        absolute = bundle if bundle.is_absolute() else PROJECT_ROOT / bundle
        return self.model_copy(
            update={
                "bundle": str(absolute),
                "store_url": url,
                "auth": self.auth.resolved(PROJECT_ROOT),
            }
        )

    def with_privacy_key(self) -> ServingArgs:
        """Resolved, with the pseudonymisation key filled in (a key file is created on first use)."""
        config = self.resolved()
        return config.model_copy(update={"privacy": config.privacy.resolved(config.store_url, PROJECT_ROOT)})

    def pseudonymiser(self) -> Callable[[str], str]:
        """The user-id map the gateway applies (for tools and tests that read the store directly)."""
        return self.with_privacy_key().privacy.pseudonymiser()


def make_experiments(args: ServingArgs, main: Engine, *, with_scorers: bool = True) -> ExperimentRuntime:
    """The replica's experiment runtime: variant engines share the store, bundles resolve like ours."""

    def variant_engine(variant: Variant) -> Engine:
        update = variant_settings(args.ranker, args.updater, variant)
        if "bundle" in update and not FilePath(update["bundle"]).is_absolute():
            update["bundle"] = str(PROJECT_ROOT / update["bundle"])
        return make_engine(args.model_copy(update=update), with_scorers=with_scorers)

    return ExperimentRuntime(args.experiments, open_store(args.store_url), main, variant_engine)


class ModelSwitch(BaseModel):
    """The deployments' ``user_config``: which bundle version to serve (``serve deploy`` can set it)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_version: str | None = None


def make_engine(args: ServingArgs, *, with_scorers: bool = True) -> Engine:
    """One replica's engine over the bundle and the shared store."""
    if args.store_url.startswith("sqlite:///"):
        FilePath(args.store_url.removeprefix("sqlite:///").split("?")[0]).parent.mkdir(
            parents=True, exist_ok=True
        )
    bundle, version = resolve_serving_bundle(args.bundle, args.model_version)
    parts = load_bundle(bundle)
    return Engine(
        space=parts.space,
        item_ids=parts.item_ids,
        store=open_store(args.store_url),
        scorers=parts.scorers if with_scorers else (),
        featurizer=parts.featurizer,
        updater_config=args.updater,
        ranker_config=args.ranker,
        model_version=version,
    )


def serving_identity(args: ServingArgs) -> tuple[str, str]:
    """``(model_version, fingerprint)`` of the bundle ``args`` serve (a registry's version, if any)."""
    bundle, version = resolve_serving_bundle(args.bundle, args.model_version)
    name, fingerprint = model_identity(bundle)
    return version or name, fingerprint
