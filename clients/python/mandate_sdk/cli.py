"""``python -m mandate_sdk keygen|token``: make an instance key and print its public JWK (what
registering the instance needs), or mint a credential with it and print the token answer."""

from __future__ import annotations

import argparse
import json
import sys

from mandate_sdk.credentials import Credentials, MandateError
from mandate_sdk.keys import generate_key, load_key, public_jwk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mandate_sdk", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    keygen = commands.add_parser("keygen", help="write a new private key (mode 0600), print its public JWK")
    keygen.add_argument("path", help="where to write the PEM file (must not exist)")
    keygen.add_argument("--type", choices=["ed25519", "p256"], default="ed25519", dest="key_type")
    token = commands.add_parser("token", help="mint a credential for an envelope and print it")
    token.add_argument("--url", required=True, help="Mandate's URL, e.g. http://127.0.0.1:8000")
    token.add_argument("--spiffe-id", required=True, help="the instance's SPIFFE ID")
    token.add_argument("--key", required=True, help="the instance's private key (PEM)")
    token.add_argument("--envelope", required=True, help="the approved envelope's id")
    token.add_argument("--scope", help="space-separated scopes (default: all the envelope grants)")
    token.add_argument("--audience", help="the credential's audience")
    args = parser.parse_args(argv)

    if args.command == "keygen":
        try:
            key = generate_key(args.path, key_type=args.key_type)
        except FileExistsError:
            print(f"{args.path} exists already; not overwriting a key", file=sys.stderr)
            return 1
        print(json.dumps(public_jwk(key)))
        return 0

    credentials = Credentials(
        args.url,
        spiffe_id=args.spiffe_id,
        key=load_key(args.key),
        envelope=args.envelope,
        scopes=args.scope.split() if args.scope else None,
        audience=args.audience,
    )
    try:
        minted = credentials.current()
    except MandateError as refused:
        print(str(refused), file=sys.stderr)
        return 1
    print(json.dumps({"access_token": minted.access_token, "scope": minted.scope, "envelope": minted.envelope}))
    return 0
