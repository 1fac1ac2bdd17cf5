"""API keys of the HTTP API: ``wayfinder keys create|list|revoke --keys-file FILE``.

``create`` prints the new key once (only its SHA-256 is stored) and appends it to the keys file;
a running app picks the change up within a second on nodes that see the file (others at the next
deploy). Scopes: ``events:write``, ``recommendations:read``, ``admin`` (implies all).

    wayfinder keys create --scopes events:write,recommendations:read --name web --keys-file out/api-keys.json
    wayfinder keys list --keys-file out/api-keys.json
    wayfinder keys revoke 3f2a9c01b7de --keys-file out/api-keys.json
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from recsys.errors import ConfigError
from serving.api_keys import DEFAULT_BURST, DEFAULT_RATE_PER_S, add_key, new_key, read_keys, revoke_key

DEFAULT_KEYS_FILE = "out/api-keys.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a key; prints it once, stores only its hash")
    create.add_argument(
        "--scopes", required=True, help="comma-separated: events:write,recommendations:read,admin"
    )
    create.add_argument("--name", default="", help="who or what uses the key")
    create.add_argument("--rate", type=float, default=DEFAULT_RATE_PER_S, help="requests/s per replica")
    create.add_argument("--burst", type=int, default=DEFAULT_BURST, help="requests at once per replica")
    listing = actions.add_parser("list", help="list keys (ids, scopes, limits; never secrets)")
    revoke = actions.add_parser("revoke", help="remove a key by its id")
    revoke.add_argument("key_id", help="the 12-hex-digit id (the part after wf_)")
    for sub in (create, listing, revoke):
        sub.add_argument("--keys-file", default=DEFAULT_KEYS_FILE, help=f"default {DEFAULT_KEYS_FILE}")


def run(args: argparse.Namespace) -> Any:
    if args.keys_command == "create":
        raw, record = new_key(args.scopes.split(","), name=args.name, rate_per_s=args.rate, burst=args.burst)
        add_key(args.keys_file, record)
        print(raw)
        print(
            f"key {record.key_id} ({','.join(record.scopes)}) added to {args.keys_file}; "
            "this is the only time it is shown",
            file=sys.stderr,
        )
        return raw
    if args.keys_command == "list":
        for record in read_keys(args.keys_file):
            print(
                f"{record.key_id}  {','.join(record.scopes):<40} {record.rate_per_s:g}/s burst {record.burst}"
                f"  {record.created_at or ''}  {record.name}"
            )
        return None
    if not revoke_key(args.keys_file, args.key_id):
        raise ConfigError(f"no key {args.key_id!r} in {args.keys_file}")
    print(f"revoked {args.key_id}")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.keys", description=__doc__)
    add_arguments(parser)
    from jobs.cli import run_guarded

    return run_guarded(lambda: run(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
