"""Serving job: the Ray Serve application over a serving bundle, on a local or running cluster.

``wayfinder serve --bundle out/bundle`` starts Ray (or joins ``--address``), deploys the app on
``http://HOST:PORT``, prints an example session, and serves until Ctrl-C (``--detach`` returns and
leaves it running on the cluster). The same app runs from ``serve run serving/config.yaml``.

On first start it creates an admin API key in the keys file beside the store (``--keys-file``),
prints it once and uses it in the example session; later starts reuse the file (``--no-auth``
serves an open API, for local experiments only).
With a bundle registry (``--bundle out/bundles``) it serves ``--model-version`` (default: the
champion); ``--reload --address auto`` re-deploys onto the running app, so a version change only
reaches the replicas' ``reconfigure`` (loaded in the background, swapped in place, no request lost).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.preprocess import add_address_argument
from recsys.errors import ConfigError

if TYPE_CHECKING:
    from serving.config import Autoscaling


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle", default="out/bundle", help="serving bundle (wayfinder pipeline writes it)"
    )
    parser.add_argument(
        "--store", default="sqlite:///out/store.db", help="sqlite:///FILE or redis://HOST:PORT/DB"
    )
    parser.add_argument("--host", default="127.0.0.1", help="HTTP host")
    parser.add_argument("--port", type=int, default=8000, help="HTTP port")
    parser.add_argument(
        "--replicas",
        type=replicas_argument,
        default=1,
        help="gateway (ranker) replicas: a count (2), or MIN-MAX for Serve autoscaling between them (1-4)",
    )
    parser.add_argument("--detach", action="store_true", help="deploy and return instead of serving here")
    parser.add_argument("--keys-file", help="API keys file (default: api-keys.json beside the store)")
    parser.add_argument("--no-auth", action="store_true", help="serve without API keys (an OPEN API)")
    parser.add_argument(
        "--model-version", help="with a bundle registry as --bundle: a version (v0002) or champion (default)"
    )
    parser.add_argument(
        "--reload",
        action="store_true",
        help="update the running app in place to --model-version / the current champion, then return",
    )
    add_address_argument(parser)


def replicas_argument(text: str) -> int | Autoscaling:
    """``--replicas``: ``N`` replicas, or ``MIN-MAX`` (Serve autoscaling with the default targets)."""
    from serving.config import Autoscaling

    low, dash, high = text.partition("-")
    try:
        if not dash:
            count = int(text)
            if count < 1:
                raise ValueError(text)
            return count
        return Autoscaling(min_replicas=int(low), max_replicas=int(high))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX replicas (N >= 1), got {text!r}") from exc


def admin_key(args: argparse.Namespace, store_url: str) -> tuple[str | None, str | None]:
    """(keys file, new admin key): the key is created, and returned, only when the file has none."""
    if getattr(args, "no_auth", False):
        return None, None
    from serving.api_keys import add_key, new_key, read_keys
    from serving.config import PROJECT_ROOT

    keys_file = getattr(args, "keys_file", None)
    if keys_file is not None:
        keys_file = str(Path(keys_file).resolve())  # a path typed on the command line is from the cwd
    else:
        beside = (
            store_url.removeprefix("sqlite:///").split("?")[0] if store_url.startswith("sqlite:") else None
        )
        keys_file = str(
            Path(beside).parent / "api-keys.json" if beside else PROJECT_ROOT / "out/api-keys.json"
        )
    if read_keys(keys_file):
        return keys_file, None
    raw, record = new_key(["admin"], name="created by wayfinder serve")
    add_key(keys_file, record)
    return keys_file, raw


def deploy(args: argparse.Namespace) -> str:
    """Deploy the application; return its base URL (``args.api_key`` holds a newly created key)."""
    from ray import serve

    from jobs._ray import init_ray
    from serving.app import ServingArgs, build_app
    from serving.auth import AuthConfig

    try:
        config = ServingArgs(
            bundle=args.bundle,
            store_url=args.store,
            gateway_replicas=args.replicas,
            model_version=getattr(args, "model_version", None),
        ).resolved()
    except ValueError as exc:
        raise ConfigError(f"invalid serving settings: {exc}") from exc
    if getattr(args, "reload", False) and not (args.address or os.environ.get("RAY_ADDRESS")):
        import ray

        if not ray.is_initialized():
            raise ConfigError("--reload updates a running app: pass --address (e.g. auto) or set RAY_ADDRESS")
    args.keys_file, args.api_key = admin_key(args, config.store_url)
    if args.keys_file is not None:
        config = config.model_copy(update={"auth": AuthConfig(keys_file=args.keys_file)})
    init_ray(args.address)
    quiet = {  # serve.start's reaches no replica; JSON lines, no access log (paths carry user ids)
        "encoding": "JSON",
        "additional_log_standard_attrs": ["name"],
        "enable_access_log": False,
        "log_level": "WARNING",
    }
    serve.start(
        http_options={"host": args.host, "port": args.port, "request_timeout_s": 30}, logging_config=quiet
    )
    serve.run(build_app(config), name="wayfinder", route_prefix="/", logging_config=quiet)
    return f"http://{args.host}:{args.port}"


def example_session(url: str, *, api_key: str | None = None, keys_file: str | None = None) -> str:
    """curl lines a person can paste to try the API (with the key, when there is one)."""
    lines = [f"Wayfinder is serving on {url}  (OpenAPI docs: {url}/docs)"]
    demo = f"{url}/demo"
    auth = ""
    if api_key is not None:
        lines.append(f"New admin API key, shown only now (its hash is in {keys_file}):\n  {api_key}")
        lines.append(f"  export WAYFINDER_KEY={api_key}")
        demo += f"#key={api_key}"  # a fragment: the page reads it, it never reaches a server log
    elif keys_file is not None:
        lines.append(
            f"API keys: {keys_file} (create one: wayfinder keys create --scopes admin --keys-file ...)"
        )
    else:
        lines.append("WARNING: no API keys (--no-auth): anyone who can reach this port can use the API")
    if keys_file is not None:
        auth = ' -H "Authorization: Bearer $WAYFINDER_KEY"'
    lines += [
        f"Demo page: {demo}",
        "Try:",
        f"  curl -s{auth} '{url}/v1/users/alice/recommendations?k=5'",
        f"  curl -s{auth} -X POST {url}/v1/events -H 'content-type: application/json' \\",
        """    -d '{"user_id": "alice", "item_id": "1", "event_type": "like", "event_id": "e-0001"}'""",
        f"  curl -s{auth} '{url}/v1/users/alice/recommendations?k=5'",
        f"  curl -s{auth} '{url}/v1/users/alice/intent'",
        f"  curl -s{auth} '{url}/v1/items/1/similar?k=5'",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> Any:
    url = deploy(args)
    if getattr(args, "reload", False):
        from recsys.engine.versions import resolve_serving_bundle

        _, version = resolve_serving_bundle(args.bundle, getattr(args, "model_version", None))
        print(f"Reloaded: {url} serves bundle version {version or '(unversioned)'}", flush=True)
        return url
    print(example_session(url, api_key=args.api_key, keys_file=args.keys_file), flush=True)
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
