"""moq-token: make keys, sign and check the JWTs a moq-relay started with --auth-key accepts."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from . import token as tk

EPILOG = """\
examples:
  moq-token keygen --private priv.pem --public pub.pem            # ES256 (P-256) key pair
  moq-token sign --key priv.pem --root live --pub demo --sub demo --expires 1h
  moq-token sign --key priv.pem --root live --sub "" --expires 7d  # watch everything under live/
  moq-token verify --key pub.pem TOKEN

claims (moq-dev/moq's moq-token, so tokens from either tool work):
  root     prefix every put/get path is relative to
  put/pub  prefixes the holder may publish (PUBLISH_NAMESPACE, PUBLISH)
  get/sub  prefixes the holder may watch (SUBSCRIBE, FETCH, TRACK_STATUS, SUBSCRIBE_NAMESPACE)
  exp/nbf/iat   expiry, not-before, issued-at (Unix seconds)
An empty prefix ("") means all of root.  Prefixes match whole path segments: live/demo covers
live/demo/cam but not live/demox.  The relay ends a session when its token expires.

exit status: 0 ok, 1 invalid token (verify) or unusable key, 2 bad command line.
"""

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float | None:
    """Seconds from "90", "30s", "10m", "1h", "7d", "2w"; None for "never"."""
    if text.strip().lower() in ("never", "none"):
        return None
    m = _DURATION.fullmatch(text.strip().lower())
    if not m:
        raise argparse.ArgumentTypeError(f"expected a duration such as 30s, 10m, 1h, 7d or never, got {text!r}")
    return float(m[1]) * _UNIT[m[2] or "s"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="moq-token", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="keygen|sign|verify")

    g = sub.add_parser("keygen", help="write a new private key and its public key",
                       description="Write a new private key (mode 0600) and its public key, PEM. "
                       "Give the public key to moq-relay --auth-key; keep the private one for signing. "
                       "With --algorithm HS256 a random shared secret is written to --private instead "
                       "(moq-relay --auth-secret-file); there is no public part.")
    g.add_argument("--private", required=True, metavar="PATH", help="private key file to create")
    g.add_argument("--public", metavar="PATH", help="public key file to create (required for ES256/EdDSA)")
    g.add_argument("--algorithm", default="ES256", choices=tk.ALGORITHMS, help="default: ES256")

    s = sub.add_parser("sign", help="print a signed token",
                       description="Print a token signed with a private key (PEM or JWK) or an HS256 secret file.")
    s.add_argument("--key", required=True, metavar="PATH", help="private key (PEM/JWK) or HS256 secret file")
    s.add_argument("--root", default="", help='prefix the --pub/--sub paths are relative to (default "": all)')
    s.add_argument("--pub", "--put", dest="put", action="append", default=[], metavar="PREFIX",
                   help='may publish here (repeatable; "" = all of root)')
    s.add_argument("--sub", "--get", dest="get", action="append", default=[], metavar="PREFIX",
                   help='may watch here (repeatable; "" = all of root)')
    s.add_argument("--expires", type=parse_duration, default=3600.0, metavar="DURATION",
                   help="lifetime: 30s, 10m, 1h, 7d or never (default 1h)")
    s.add_argument("--not-before", type=parse_duration, default=None, metavar="DURATION",
                   help="valid only from this long after now (default: at once)")

    v = sub.add_parser("verify", help="check a token and print its claims",
                       description="Check a token's signature and times; print its claims as JSON, or the "
                       "reason it is invalid (exit 1).")
    v.add_argument("--key", required=True, action="append", metavar="PATH",
                   help="public key (PEM/JWK), private key or HS256 secret file (repeatable)")
    v.add_argument("token", metavar="TOKEN", help='the token, or "-" to read it from stdin')
    return p


def _keygen(args: argparse.Namespace) -> int:
    if args.algorithm != "HS256" and not args.public:
        print(f"moq-token: --public is required for {args.algorithm}", file=sys.stderr)
        return 2
    key = tk.generate_key(args.algorithm)
    try:
        tk.write_key_pair(key, args.private, args.public if args.algorithm != "HS256" else None)
    except FileExistsError as exc:
        print(f"moq-token: {exc.filename} exists; not overwriting it", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"moq-token: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    what = f"public key {args.public}" if args.algorithm != "HS256" else "no public part (a shared secret)"
    print(f"{args.algorithm}: private key {args.private}, {what}", file=sys.stderr)
    return 0


def _sign(args: argparse.Namespace) -> int:
    try:
        key = tk.load_key(args.key)
        now = int(time.time())
        claims = tk.Claims(root=args.root, put=tuple(args.put), get=tuple(args.get), iat=now,
                           exp=None if args.expires is None else now + int(args.expires),
                           nbf=None if args.not_before is None else now + int(args.not_before))
        print(tk.sign(key, claims))
    except ValueError as exc:
        print(f"moq-token: {exc}", file=sys.stderr)
        return 1
    return 0


def _verify(args: argparse.Namespace) -> int:
    try:
        keys = [tk.load_key(path) for path in args.key]
    except ValueError as exc:
        print(f"moq-token: {exc}", file=sys.stderr)
        return 1
    text = sys.stdin.read() if args.token == "-" else args.token
    try:
        claims = tk.verify(text, keys, time.time())
    except tk.TokenError as exc:
        print(f"invalid token ({exc.kind}): {exc.reason}", file=sys.stderr)
        shown = tk.unverified_claims(text)
        if shown:
            print(f"  unverified claims: {json.dumps(shown, sort_keys=True)}", file=sys.stderr)
        return 1
    out = claims.to_payload()
    out["allows"] = {"put": list(claims.grants("put")), "get": list(claims.grants("get"))}  # absolute prefixes
    print(json.dumps(out, sort_keys=True))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return {"keygen": _keygen, "sign": _sign, "verify": _verify}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
