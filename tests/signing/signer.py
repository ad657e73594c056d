#!/usr/bin/env python3
"""Independent Tessera request signer, written from docs/SIGNING.md alone.

Standard library only and no project code, so that the host's verifier is tested against
the document rather than against itself. Prints the three header fields to add to the
request, one per line (`Name: value`); with --show-base, also prints the signature base to
stderr. Never prints the API key or the signing key.

    python3 tests/signing/signer.py --api-key tsr_app_... --method POST \
        --url https://tessera.example.com/v1/proxy --body '{"a":1}' \
        [--created 1767225600] [--nonce ...]

Without --created / --nonce it uses the current time and a fresh random nonce.

    python3 tests/signing/signer.py --check-examples docs/SIGNING.md

recomputes every worked example of the document and exits non-zero on any difference.
"""

import argparse
import base64
import hashlib
import hmac
import re
import secrets
import sys
import time

DERIVATION_CONTEXT = b"tessera request signing v1"
KEY_ID_RE = re.compile(r"[0-9a-f]{16}")
NONCE_RE = re.compile(r"[A-Za-z0-9_-]{16,64}")


def parse_api_key(key: str):
    """Returns (key_id, secret_bytes). Splits by position: the secret may contain '_'."""
    for kind in ("app", "agent"):
        prefix = f"tsr_{kind}_"
        if key.startswith(prefix):
            rest = key[len(prefix):]
            break
    else:
        raise ValueError("not a Tessera API key (tsr_app_... or tsr_agent_...)")
    key_id, sep, secret = rest[:16], rest[16:17], rest[17:]
    if not KEY_ID_RE.fullmatch(key_id) or sep != "_":
        raise ValueError("malformed key id")
    if len(secret) != 43 or not re.fullmatch(r"[A-Za-z0-9_-]+", secret):
        raise ValueError("malformed secret")
    secret_bytes = base64.urlsafe_b64decode(secret + "=")
    if len(secret_bytes) != 32:
        raise ValueError("secret must be 32 bytes")
    return key_id, secret_bytes


def signing_key(secret_bytes: bytes) -> bytes:
    return hmac.new(secret_bytes, DERIVATION_CONTEXT, hashlib.sha256).digest()


def content_digest(body: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def sign(api_key: str, method: str, url: str, body: bytes, created: int, nonce: str):
    """Returns (headers as a list of (name, value), signature base)."""
    key_id, secret = parse_api_key(api_key)
    if not NONCE_RE.fullmatch(nonce):
        raise ValueError("nonce must be 16-64 characters of A-Z a-z 0-9 _ -")
    digest = content_digest(body)
    params = (
        '("@method" "@target-uri" "content-digest")'
        f';created={created};nonce="{nonce}";keyid="{key_id}";alg="hmac-sha256"'
    )
    lines = [
        f'"@method": {method}',
        f'"@target-uri": {url}',
        f'"content-digest": {digest}',
        f'"@signature-params": {params}',
    ]
    for line in lines:
        if any(not (0x20 <= ord(c) < 0x7F) for c in line):
            raise ValueError("method and URL must be printable ASCII (percent-encode the URL)")
    base = "\n".join(lines)
    mac = hmac.new(signing_key(secret), base.encode("ascii"), hashlib.sha256).digest()
    headers = [
        ("Content-Digest", digest),
        ("Signature-Input", f"tsr={params}"),
        ("Signature", "tsr=:" + base64.b64encode(mac).decode("ascii") + ":"),
    ]
    return headers, base


def check_examples(path: str) -> int:
    """Recomputes the worked examples (```text example-N:field blocks) of SIGNING.md."""
    examples = {}
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    i = 0
    while i < len(lines):
        m = re.fullmatch(r"```text (example-[0-9]+):([a-z-]+)", lines[i])
        i += 1
        if not m:
            continue
        block = []
        while i < len(lines) and lines[i] != "```":
            block.append(lines[i])
            i += 1
        examples.setdefault(m.group(1), {})[m.group(2)] = "\n".join(block)
    if not examples:
        print("signer.py: no worked examples found", file=sys.stderr)
        return 1
    failures = 0
    for name, ex in sorted(examples.items()):
        headers, base = sign(ex["api-key"], ex["method"], ex["target-uri"],
                             ex["body"].encode("utf-8"), int(ex["created"]), ex["nonce"])
        got = dict(headers)
        _, secret = parse_api_key(ex["api-key"])
        for field, value in [("signing-key", signing_key(secret).hex()),
                             ("content-digest", got["Content-Digest"]),
                             ("signature-base", base),
                             ("signature-input", got["Signature-Input"]),
                             ("signature", got["Signature"])]:
            if ex.get(field) != value:
                failures += 1
                print(f"{name}: {field} differs", file=sys.stderr)
    print(f"checked {len(examples)} examples, {failures} differences")
    return 1 if failures else 0


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--check-examples":
        return check_examples(sys.argv[2])
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--api-key", required=True)
    p.add_argument("--method", required=True)
    p.add_argument("--url", required=True, help="absolute target URI, exactly as sent")
    body = p.add_mutually_exclusive_group()
    body.add_argument("--body", help="request body, encoded as UTF-8")
    body.add_argument("--body-file", help="file holding the request body bytes")
    p.add_argument("--created", type=int, help="Unix seconds (default: now)")
    p.add_argument("--nonce", help="default: 22 characters of fresh randomness")
    p.add_argument("--show-base", action="store_true", help="print the signature base to stderr")
    a = p.parse_args()

    if a.body_file is not None:
        with open(a.body_file, "rb") as f:
            payload = f.read()
    else:
        payload = (a.body or "").encode("utf-8")
    created = a.created if a.created is not None else int(time.time())
    nonce = a.nonce if a.nonce is not None else secrets.token_urlsafe(16)
    try:
        headers, base = sign(a.api_key, a.method, a.url, payload, created, nonce)
    except ValueError as e:
        print(f"signer.py: {e}", file=sys.stderr)
        return 2
    for name, value in headers:
        print(f"{name}: {value}")
    if a.show_base:
        print(base, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
