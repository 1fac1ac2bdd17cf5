"""Tuning job: one Ray Tune experiment over every model family, then the ensemble and its champion.

Run it as ``wayfinder tune --data out/data --out out/models`` or, against a running cluster,
``ray job submit --working-dir . -- python -m jobs.tune --data ... --out ...``. Search spaces and
budgets come from ``configs/search_spaces.yaml`` (``--spaces``); ``--search`` picks grid, random
or Bayesian (Optuna TPE) search; iterative families report validation NDCG@10 after every chunk of
epochs and a per-family ASHA stops weak trials. Trials take ``--cpus-per-trial`` (0.5: four side by
side on two cores) and reuse their actors. The experiment lives under ``--storage`` and continues
with ``--resume``. The best trial of each family then feeds :func:`recsys.ensemble.build_ensemble`,
and the ensemble is published to the registry at ``--out`` as the new champion.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import optuna
import scipy.sparse as sp
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler
from ray.tune.search.optuna import OptunaSearch

from jobs.preprocess import add_address_argument
from recsys.data.storage import Location, read_json, write_json
from recsys.ensemble import METRIC, EnsembleConfig, EvalSet, SearchSpaces, TrialRun, cv_sets, holdout_sets
from recsys.ensemble.members import best_per_family, best_table, trial_summary
from recsys.ensemble.spaces import trial_params
from recsys.errors import ConfigError

DEFAULT_SPACES = Path(__file__).resolve().parents[1] / "configs" / "search_spaces.yaml"
_STAMP = "wayfinder-tune.json"


class TuneSettings(BaseModel):
    """The job's validated settings, built once from the command line."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str
    out: str
    spaces: str = str(DEFAULT_SPACES)
    families: list[str] | None = None
    search: Literal["grid", "random", "bayes"] = "bayes"
    cv_folds: int | None = Field(default=None, ge=2)
    seed: int = 0
    cpus_per_trial: float = Field(default=0.5, gt=0.0)
    max_concurrent: int | None = Field(default=None, ge=1)
    early_stopping: bool = True
    storage: str | None = None
    name: str = "tune"
    resume: bool = False
    smoke_test: bool = False
    budget: int | None = Field(default=None, ge=1)
    ensemble: bool = True
    promote: bool = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="preprocessed data directory or URI")
    parser.add_argument("--out", required=True, help="model registry directory or URI")
    parser.add_argument("--spaces", default=str(DEFAULT_SPACES), help="search space YAML file")
    parser.add_argument("--families", default="all", help="comma-separated families to tune, or all")
    parser.add_argument("--search", choices=["grid", "random", "bayes"], default="bayes", help="search")
    parser.add_argument("--cv-folds", type=int, help="score trials by K-fold user cross-validation (K >= 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, search and meta-learner")
    parser.add_argument("--cpus-per-trial", type=float, default=0.5, help="CPU share reserved by each trial")
    parser.add_argument("--max-concurrent", type=int, help="at most this many trials at once (1: sequential)")
    parser.add_argument("--no-early-stopping", dest="early_stopping", action="store_false", help="no ASHA")
    parser.add_argument("--storage", help="Tune storage_path (default: OUT/tune-runs)")
    parser.add_argument("--name", default="tune", help="experiment name under the storage path")
    parser.add_argument("--resume", action="store_true", help="continue the experiment found at storage/name")
    parser.add_argument("--smoke-test", action="store_true", help="the spaces file's smoke_test subset (CI)")
    parser.add_argument("--budget", type=int, help="at most this many trials per family (a short run)")
    parser.add_argument("--no-ensemble", dest="ensemble", action="store_false", help="tune only, no publish")
    parser.add_argument("--no-promote", dest="promote", action="store_false", help="publish, keep champion")
    add_address_argument(parser)


def settings_from_args(args: argparse.Namespace) -> TuneSettings:
    names = None if args.families.strip().lower() == "all" else [f.strip() for f in args.families.split(",")]
    fields = {k: getattr(args, k) for k in TuneSettings.model_fields if k not in ("families",)}
    try:
        return TuneSettings(**fields, families=[n for n in names if n] if names else None)
    except ValidationError as exc:
        raise ConfigError(f"invalid tuning settings: {exc}") from exc


def load_spaces(settings: TuneSettings) -> tuple[SearchSpaces, EnsembleConfig]:
    """Read the spaces file: the families to tune (selected, or the smoke subset) and the ensemble config."""
    path = Path(settings.spaces)
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        ensemble = EnsembleConfig.model_validate(
            {"seed": settings.seed, **(document.pop("ensemble", None) or {})}
        )
        spaces = SearchSpaces.model_validate(document)
    except OSError as exc:
        raise ConfigError(f"cannot read the search spaces file {path}: {exc}") from exc
    except (yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"search spaces file {path} is invalid: {exc}") from exc
    spaces = spaces.smoke() if settings.smoke_test else spaces
    spaces = spaces.capped(settings.budget) if settings.budget else spaces
    return (spaces.select(settings.families) if settings.families else spaces), ensemble


@dataclass(frozen=True)
class _Shared:
    """What every trial reads; put in the object store once by ``tune.with_parameters``."""

    sets: list[EvalSet]
    item_features: sp.csr_matrix | None
    spaces: SearchSpaces


def _trainable(config: dict[str, Any], shared: _Shared) -> None:
    family, params = trial_params(config["trial"])
    iterative = shared.spaces.space(family).iterative
    run = TrialRun(family, params, shared.sets, iterative=iterative, item_features=shared.item_features)
    if checkpoint := tune.get_checkpoint():
        with checkpoint.as_directory() as directory:
            run.restore(directory)
    for metrics in run.steps():
        if run.iterative is None:
            tune.report(metrics)
            continue
        with tempfile.TemporaryDirectory() as directory:
            run.save(directory)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


class FamilyASHA(FIFOScheduler):
    """ASHA per iterative family (trials compete only with their own family), FIFO for the rest."""

    def __init__(self, spaces: SearchSpaces) -> None:
        super().__init__()
        self._by_family: dict[str, Any] = {}
        for family, space in spaces.families.items():
            if space.iterative is not None:
                reports = math.ceil(space.iterative.max / space.iterative.every)
                self._by_family[family] = AsyncHyperBandScheduler(
                    metric=METRIC, mode="max", max_t=reports, grace_period=min(2, reports), reduction_factor=3
                )

    def _forward(self, hook: str, controller: Any, trial: Any, *rest: Any) -> Any:
        scheduler = self._by_family.get(trial.config["trial"]["family"])
        return getattr(scheduler, hook)(controller, trial, *rest) if scheduler else self.CONTINUE

    def on_trial_add(self, controller: Any, trial: Any) -> None:
        self._forward("on_trial_add", controller, trial)

    def on_trial_result(self, controller: Any, trial: Any, result: dict[str, Any]) -> str:
        return str(self._forward("on_trial_result", controller, trial, result))

    def on_trial_complete(self, controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._forward("on_trial_complete", controller, trial, result)

    def on_trial_remove(self, controller: Any, trial: Any) -> None:
        self._forward("on_trial_remove", controller, trial)


class _Progress(tune.Callback):
    """One line per finished trial and, every few trials, a table of every family."""

    def __init__(self, total: int) -> None:
        self.total, self.started = total, time.time()

    def setup(self, *args: Any, **info: Any) -> None:
        self.started = time.time()  # also on --resume: time of this run, not the first one

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        best = {id(t): t.metric_analysis.get(METRIC, {}).get("max", float("nan")) for t in trials}
        done = len({t.trial_id for t in trials if t.status in ("TERMINATED", "ERROR")} | {trial.trial_id})
        family, params = trial_params(trial.config["trial"])
        epochs = trial.last_result.get("epochs", 0)
        _say(f"{done}/{self.total} {family:<11} {best[id(trial)]:.4f} epochs {epochs} {params}")
        if done % max(5, self.total // 6) and done != self.total:
            return
        _say(f"progress after {done}/{self.total} trials, {time.time() - self.started:.0f}s:")
        _say(f"  {'family':<12}{'done':>6}{'running':>9}{'pending':>9}{'best ' + METRIC:>20}")
        for name in dict.fromkeys(t.config["trial"]["family"] for t in trials):
            mine = [t for t in trials if t.config["trial"]["family"] == name]
            count = {
                status: sum(t.status == status for t in mine)
                for status in ("TERMINATED", "RUNNING", "PENDING")
            }
            scores = [best[id(t)] for t in mine if best[id(t)] == best[id(t)]]
            top = f"{max(scores):.4f}" if scores else "-"
            _say(f"  {name:<12}{count['TERMINATED']:>6}{count['RUNNING']:>9}{count['PENDING']:>9}{top:>20}")


def _say(line: str) -> None:
    """A progress line on stderr."""
    print(f"[tune] {line}", file=sys.stderr, flush=True)


def _search(spaces: SearchSpaces, settings: TuneSettings) -> tuple[dict[str, Any], Any, int, int]:
    """``(param_space, search_alg, num_samples, total trials)`` of the chosen search."""
    if settings.search == "bayes":
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        startup = max(5, 2 * len(spaces.families))
        sampler = optuna.samplers.TPESampler(seed=settings.seed, n_startup_trials=startup)
        searcher = OptunaSearch(space=spaces.suggest, metric=METRIC, mode="max", sampler=sampler)
        total = len(spaces.schedule())
        return {}, searcher, total, total
    points = spaces.trial_points(settings.search, settings.seed)
    return {"trial": tune.grid_search(points)}, None, 1, len(points)


def _tuner(
    settings: TuneSettings, spaces: SearchSpaces, shared: _Shared, storage: str, stamp: dict[str, Any]
) -> Any:
    trainable = tune.with_resources(
        tune.with_parameters(_trainable, shared=shared), {"cpu": settings.cpus_per_trial}
    )
    experiment = Location.parse(f"{storage}/{settings.name}")
    if settings.resume:
        if not tune.Tuner.can_restore(experiment.uri):
            raise ConfigError(f"no Tune experiment to resume at {experiment.uri}; run without --resume first")
        found = read_json(experiment.child(_STAMP))
        if found.get("fingerprint") != stamp["fingerprint"]:
            raise ConfigError(
                f"{experiment.uri} was tuned on other data ({found.get('data')}); cannot resume"
            )
        return tune.Tuner.restore(
            experiment.uri, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    if experiment.exists():
        raise ConfigError(
            f"experiment {experiment.uri} exists: pass --resume to continue it, or --name/--storage to "
            "start another"
        )
    write_json(stamp, experiment.child(_STAMP))
    param_space, search_alg, samples, total = _search(spaces, settings)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            metric=METRIC,
            mode="max",
            num_samples=samples,
            search_alg=search_alg,
            scheduler=FamilyASHA(spaces) if settings.early_stopping else None,
            reuse_actors=True,
            max_concurrent_trials=settings.max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=settings.name,
            storage_path=storage,
            verbose=0,
            callbacks=[_Progress(total)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(
                max_failures=2
            ),  # a lost trial actor retries (from its checkpoint)
        ),
    )


def _ensemble(
    settings: TuneSettings,
    data: Location,
    shared: Any,
    dataset: dict[str, Any],
    best: dict[str, dict[str, Any]],
    config: EnsembleConfig,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """Build the ensemble from the best trials, publish it, and return its manifest."""
    from jobs._executor import RayDataExecutor
    from recsys.ensemble import build_ensemble, load_signals
    from recsys.ensemble.signals import item_columns
    from recsys.registry import Registry, build_manifest
    from recsys.registry.manifest import ensemble_sections, metrics_table

    split = shared.split
    signals = load_signals(data, split) if config.signals is not None else None
    result = build_ensemble(
        split,
        {family: row["params"] for family, row in best.items()},
        config=config,
        signals=signals,
        item_features=shared.item_features,
        executor=RayDataExecutor(progress=False, label="tune"),
        on_message=_say,
    )
    families, ensemble = ensemble_sections(result.report, best)
    counts = ("source", "positives", "seed", "users", "items", "interactions", "train", "valid", "test")
    manifest = build_manifest(
        data=data,
        dataset={k: dataset[k] for k in counts if k in dataset},
        config=extra["config"],
        test=result.report["test"],
        valid=result.report["valid"],
        families=families,
        ensemble=ensemble,
        extra={"tuning": extra["tuning"]},
    )
    item_ids, item_idx = item_columns(data, split)
    registry = Registry(settings.out)
    manifest["version"] = registry.publish(
        result.model,
        manifest,
        data=data,
        item_ids=item_ids,
        item_idx=item_idx.tolist(),
        promote=settings.promote,
    )
    promoted = " (champion)" if settings.promote else ""
    print(
        f"Published {manifest['version']} to {registry.root.uri}{promoted}\n{metrics_table(manifest)}",
        flush=True,
    )
    return manifest


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the job for parsed arguments; return the champion's manifest (or the tuning summary)."""
    from jobs._ray import init_ray
    from recsys.evaluation.runner import load_shared_data, resolve_families
    from recsys.registry import data_fingerprint

    settings = settings_from_args(args)
    spaces, ensemble_config = load_spaces(settings)
    runnable, skipped = resolve_families(list(spaces.families))
    data = Location.parse(settings.data)
    shared, dataset = load_shared_data(data, seed=settings.seed)
    if shared.item_features is None and "content" in runnable:
        runnable.remove("content")
        skipped["content"] = "it needs features/item_matrix.npz, which the data lacks"
    for family, reason in skipped.items():
        _say(f"skipping {family}: {reason}")
    spaces = spaces.select(runnable)
    sets = (
        cv_sets(shared.split, settings.cv_folds, settings.seed)
        if settings.cv_folds
        else holdout_sets(shared.split)
    )
    out = Location.parse(settings.out)
    storage = Location.parse(settings.storage).uri if settings.storage else out.child("tune-runs").uri
    stamp = {"data": data.uri, "fingerprint": data_fingerprint(data), "settings": settings.model_dump()}
    init_ray(args.address)
    tuner = _tuner(settings, spaces, _Shared(sets, shared.item_features, spaces), storage, stamp)
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    unfinished = any(r.error is None and not r.config for r in results)
    if unfinished or results.num_terminated + results.num_errors < len(results):
        _say(f"interrupted: continue with the same command and --resume ({storage}/{settings.name})")
        raise KeyboardInterrupt
    histories = [(r.config["trial"], r.metrics_dataframe) for r in results if r.error is None]
    trials = [t for t in (trial_summary(c, h, spaces) for c, h in histories) if t is not None]
    if not trials:
        raise ConfigError(f"no trial finished; see the trial errors under {storage}/{settings.name}")
    best = best_per_family(trials)
    tuning = {
        "search": settings.search,
        "trials": len(trials),
        "errors": len(results) - len(trials),
        "wall_seconds": wall,
        "trials_per_minute": 60.0 * len(trials) / max(wall, 1e-9),
        "trial_seconds_total": sum(t["seconds"] for t in trials),
        "stopped_early": sum(t["stopped_early"] for t in trials),
        "experiment": f"{storage}/{settings.name}",
    }
    summary = {"tuning": tuning, "best": best, "trials": trials}
    write_json(summary, Location.parse(f"{storage}/{settings.name}").child("summary.json"))
    print(
        f"Tuned {len(trials)} trials in {wall:.1f}s ({tuning['trials_per_minute']:.1f}/min); "
        f"best trial per family:\n{best_table(best)}",
        flush=True,
    )
    if not settings.ensemble:
        return summary
    config = {
        "settings": settings.model_dump(),
        "spaces": spaces.model_dump(),
        "ensemble": ensemble_config.model_dump(),
    }
    return _ensemble(
        settings, data, shared, dataset, best, ensemble_config, {"config": config, "tuning": tuning}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.tune", description=__doc__)
    add_arguments(parser)
    from jobs.cli import run_guarded

    return run_guarded(lambda: run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
