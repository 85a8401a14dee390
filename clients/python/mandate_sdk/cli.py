"""``mandate-sdk keygen|register|token`` (or ``python -m mandate_sdk``): make an instance key and
print its public JWK, register the instance with it (or with a workload token), mint a credential.

API tokens and workload tokens are read from the environment or a file, never from the command line
(where other users of the machine could read them in the process list)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from mandate_sdk.api import Mandate
from mandate_sdk.credentials import Credentials, MandateError
from mandate_sdk.keys import generate_key, load_key, public_jwk


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mandate-sdk", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    keygen = commands.add_parser("keygen", help="write a new private key (mode 0600), print its public JWK")
    keygen.add_argument("path", help="where to write the PEM file (must not exist)")
    keygen.add_argument("--type", choices=["ed25519", "p256"], default="ed25519", dest="key_type")

    register = commands.add_parser(
        "register", help="register an instance of an agent (owner's API token in MANDATE_API_TOKEN); print it"
    )
    register.add_argument("--url", required=True, help="Mandate's URL, e.g. http://127.0.0.1:8000")
    register.add_argument("--agent", required=True, help="the agent's slug")
    register.add_argument("--key", help="the instance's private key (PEM); its public JWK is registered")
    register.add_argument(
        "--workload-token-file", help="a file holding a workload token from a trusted issuer (with or instead of --key)"
    )
    register.add_argument("--label", default="", help="a name for the instance, e.g. worker-1")

    token = commands.add_parser("token", help="mint a credential for an envelope and print it")
    token.add_argument("--url", required=True, help="Mandate's URL, e.g. http://127.0.0.1:8000")
    token.add_argument("--spiffe-id", required=True, help="the instance's SPIFFE ID")
    token.add_argument("--key", required=True, help="the instance's private key (PEM)")
    token.add_argument("--envelope", required=True, help="the approved envelope's id")
    token.add_argument("--scope", help="space-separated scopes (default: all the envelope grants)")
    audience = token.add_mutually_exclusive_group()
    audience.add_argument("--audience", help="the credential's audience")
    audience.add_argument("--resource", help="the credential's audience as an RFC 8707 resource URI (an MCP server)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "keygen":
            return _keygen(args)
        if args.command == "register":
            return _register(args)
        return _token(args)
    except MandateError as refused:
        print(str(refused), file=sys.stderr)
        return 1


def _keygen(args: argparse.Namespace) -> int:
    try:
        key = generate_key(args.path, key_type=args.key_type)
    except FileExistsError:
        print(f"{args.path} exists already; not overwriting a key", file=sys.stderr)
        return 1
    print(json.dumps(public_jwk(key)))
    return 0


def _register(args: argparse.Namespace) -> int:
    api_token = os.environ.get("MANDATE_API_TOKEN", "")
    if not api_token:
        print("set MANDATE_API_TOKEN to the agent owner's API token", file=sys.stderr)
        return 2
    if not args.key and not args.workload_token_file:
        print("name the instance's key (--key) or a workload token (--workload-token-file)", file=sys.stderr)
        return 2
    jwk = public_jwk(load_key(args.key)) if args.key else None
    workload = Path(args.workload_token_file).read_text().strip() if args.workload_token_file else None
    instance = Mandate(args.url, api_token).register_instance(
        args.agent, public_jwk=jwk, workload_token=workload, label=args.label
    )
    print(json.dumps({name: instance.get(name) for name in ("id", "spiffe_id", "agent", "label", "status")}))
    return 0


def _token(args: argparse.Namespace) -> int:
    credentials = Credentials(
        args.url,
        spiffe_id=args.spiffe_id,
        key=load_key(args.key),
        envelope=args.envelope,
        scopes=args.scope.split() if args.scope else None,
        audience=args.audience,
        resource=args.resource,
    )
    minted = credentials.current()
    print(json.dumps({"access_token": minted.access_token, "scope": minted.scope, "envelope": minted.envelope}))
    return 0
