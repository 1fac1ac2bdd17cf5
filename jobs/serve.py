"""Serving job: the Ray Serve application over a serving bundle, on a local or running cluster.

``wayfinder serve --bundle out/bundle`` starts Ray (or joins ``--address``), deploys the app on
``http://HOST:PORT``, prints an example session, and serves until Ctrl-C (``--detach`` returns and
leaves it running on the cluster). The same app runs from ``serve run serving/config.yaml``.

With a bundle registry (``--bundle out/bundles``) it serves ``--model-version`` (default: the
champion); ``--reload --address auto`` re-deploys onto the running app, so a version change only
reaches the replicas' ``reconfigure`` (loaded in the background, swapped in place, no request lost).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from jobs.preprocess import add_address_argument
from recsys.errors import ConfigError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle", default="out/bundle", help="serving bundle (wayfinder pipeline writes it)"
    )
    parser.add_argument(
        "--store", default="sqlite:///out/store.db", help="sqlite:///FILE or redis://HOST:PORT/DB"
    )
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port")
    parser.add_argument("--replicas", type=int, default=1, help="gateway (ranker) replicas")
    parser.add_argument("--detach", action="store_true", help="deploy and return instead of serving here")
    parser.add_argument(
        "--model-version", help="with a bundle registry as --bundle: a version (v0002) or champion (default)"
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="update the running app in place to --model-version / the current champion, then return",
    )
    add_address_argument(parser)


def deploy(args: argparse.Namespace) -> str:
    """Deploy the application; return its base URL."""
    from ray import serve

    from jobs._ray import init_ray
    from serving.app import ServingArgs, build_app

    try:
        config = ServingArgs(
            bundle=args.bundle,
            store_url=args.store,
            gateway_replicas=args.replicas,
            model_version=getattr(args, "model_version", None),
        )
    except ValueError as exc:
        raise ConfigError(f"invalid serving settings: {exc}") from exc
    if getattr(args, "reload", False) and not (args.address or os.environ.get("RAY_ADDRESS")):
        import ray

        if not ray.is_initialized():
            raise ConfigError("--reload updates a running app: pass --address (e.g. auto) or set RAY_ADDRESS")
    init_ray(args.address)
    quiet = {"enable_access_log": False, "log_level": "WARNING"}  # serve.start's reaches no replica
    serve.start(
        http_options={"host": args.host, "port": args.port, "request_timeout_s": 30}, logging_config=quiet
    )
    serve.run(build_app(config), name="wayfinder", route_prefix="/", logging_config=quiet)
    return f"http://{args.host}:{args.port}"


def example_session(url: str) -> str:
    """curl lines a person can paste to try the API."""
    return "\n".join(
        [
            f"Wayfinder is serving on {url}  (OpenAPI docs: {url}/docs)",
            "Try:",
            f"  curl -s '{url}/v1/users/alice/recommendations?k=5'",
            f"  curl -s -X POST {url}/v1/events -H 'content-type: application/json' \\",
            """    -d '{"user_id": "alice", "item_id": "1", "event_type": "like", "event_id": "alice-1"}'""",
            f"  curl -s '{url}/v1/users/alice/recommendations?k=5'",
            f"  curl -s '{url}/v1/users/alice/intent'",
            f"  curl -s '{url}/v1/items/1/similar?k=5'",
        ]
    )


def run(args: argparse.Namespace) -> Any:
    url = deploy(args)
    if getattr(args, "reload", False):
        from recsys.engine.versions import resolve_serving_bundle

        _, version = resolve_serving_bundle(args.bundle, getattr(args, "model_version", None))
        print(f"Reloaded: {url} serves bundle version {version or '(unversioned)'}", flush=True)
        return url
    print(example_session(url), flush=True)
    if args.detach:
        return url
    print("Serving until Ctrl-C.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        from ray import serve

        serve.shutdown()
    return url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.serve", description=__doc__)
    add_arguments(parser)
    from jobs.cli import run_guarded

    return run_guarded(lambda: run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
