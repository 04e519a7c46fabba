"""Webhook authentication: one function per scheme, so an unconfirmed algorithm is one edit.

Zoho Books (UNCONFIRMED for Books; documented for Zoho Billing, brief §7): HMAC-SHA256 with the
connection's signing secret over the canonical string = EVERY query-string and form parameter
(``token`` included: Zoho signs the URL it calls, whatever we named a parameter) sorted by key,
each written key+value with no separator, then the raw body (empty for a form post). Whether
Books writes the digest in hex or base64 is unconfirmed too: ``ZOHO_WEBHOOK_SIGNATURE_ENCODING``.

Where a customer cannot sign, a token in ``X-Connector-Token`` or ``?token=`` is accepted instead
when no signature is present. That token is NOT the signing secret (it is derived from it one
way, ``connector.webhook_secrets.derive_token``), because query strings reach access logs.

A signature that is present but wrong is refused even when a valid token comes with it (fail
closed): a wrong signature means a changed body or a wrong secret, and letting the token (the
weaker, logged credential) override the stronger one would make signing pointless. An operator
finds out which from one delivery: ``connector webhooks zoho ID --inspect-last``.

SAP Concur ESS (algorithm UNCONFIRMED, sap-concur §5.3): ``Concur-Signature`` = base64 of an
RSA PKCS#1 v1.5 SHA-256 signature over the raw body, checked against every configured public key
(SAP rotates the key yearly; several are configured during the overlap).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connector.errors import ConfigurationError, WebhookSignatureError
from connector.webhook_secrets import derive_token

ZOHO_SIGNATURE_HEADER = "X-Zoho-Webhook-Signature"
TOKEN_HEADER = "X-Connector-Token"
TOKEN_PARAM = "token"
CONCUR_SIGNATURE_HEADER = "Concur-Signature"
ENCODINGS = ("hex", "base64")


def zoho_canonical(params: Iterable[tuple[str, str]], body: bytes) -> bytes:
    return "".join(k + v for k, v in sorted(params)).encode("utf-8") + body


def zoho_signature(
    secret: str, params: Iterable[tuple[str, str]], body: bytes, encoding: str = "hex"
) -> str:
    """THE Zoho scheme: HMAC-SHA256 of the canonical string, hex or base64."""
    digest = hmac.new(secret.encode("utf-8"), zoho_canonical(params, body), hashlib.sha256)
    if encoding == "base64":
        return base64.b64encode(digest.digest()).decode("ascii")
    if encoding == "hex":
        return digest.hexdigest()
    raise ValueError(f"signature encoding must be hex or base64, not {encoding!r}")


def _same_signature(expected: str, received: str, encoding: str) -> bool:
    received = received.strip()
    if encoding == "hex":
        received = received.lower()
    return hmac.compare_digest(expected.encode(), received.encode("utf-8", "replace"))


def verify_zoho(
    secret: str,
    *,
    params: Iterable[tuple[str, str]],
    body: bytes,
    signature: str | None,
    token: str | None,
    encoding: str = "hex",
) -> str:
    """Accept a valid signature, or a valid token when unsigned; return which, raise otherwise.

    ``params`` are ALL query (and form) parameters as received, the token among them.
    """
    if signature:
        expected = zoho_signature(secret, params, body, encoding)
        if _same_signature(expected, signature, encoding):
            return "signature"
        raise WebhookSignatureError(
            f"{ZOHO_SIGNATURE_HEADER} does not match this connection's secret ({encoding} "
            "HMAC-SHA256 over every query parameter then the body); a token does not override "
            "a wrong signature"
        )
    if token:
        if hmac.compare_digest(token.encode("utf-8", "replace"), derive_token(secret).encode()):
            return "token"
        raise WebhookSignatureError(
            "the shared token does not match this connection's webhook token"
        )
    raise WebhookSignatureError(
        f"unauthenticated: send {ZOHO_SIGNATURE_HEADER}, or the webhook token in {TOKEN_HEADER} "
        f"or ?{TOKEN_PARAM}="
    )


# --------------------------------------------------------------------------- diagnosis

#: What ``--inspect-last`` shows of a canonical string (the body can be large).
_SHOWN = 300
_MASK = "***"


def _masked_params(params: Sequence[tuple[str, str]], hidden: set[str]) -> list[tuple[str, str]]:
    return [(k, _MASK if k == TOKEN_PARAM or v in hidden else v) for k, v in params]


def diagnose_zoho(
    secret: str,
    *,
    query: Sequence[tuple[str, str]],
    form: Sequence[tuple[str, str]],
    body: bytes,
    headers: Iterable[tuple[str, str]],
    signature: str | None,
    token: str | None,
    encoding: str,
    outcome: str,
) -> dict[str, Any]:
    """What one delivery looked like and which canonical strings match its signature.

    Stored (audit row) for ``connector webhooks zoho ID --inspect-last`` so an operator can
    confirm Books' scheme from one real delivery. Secrets never go in: the token's value and
    any header or parameter equal to the secret or token are masked, and no HMAC we computed is
    kept (only whether it matched), so the row cannot be replayed as a valid signature.
    """
    hidden = {secret, derive_token(secret)}
    if token:
        hidden.add(token)
    shown_headers = {
        k: (_MASK if k.lower() in (TOKEN_HEADER.lower(), "authorization", "cookie") or v in hidden
            else v[:200])
        for k, v in headers
    }  # fmt: skip
    variants = {
        "all query and form parameters, then the body (documented; what we verify)": (
            [*query, *form],
            body,
        ),
        "query without token, then the body (earlier versions)": (
            [(k, v) for k, v in query if k != TOKEN_PARAM] + list(form),
            body,
        ),
        "body only": ([], body),
        "query parameters only": (list(query), b""),
    }
    tried = []
    for label, (params, signed_body) in variants.items():
        canonical_shown = zoho_canonical(_masked_params(params, hidden), signed_body)
        text = canonical_shown.decode("utf-8", "replace")
        tried.append(
            {
                "variant": label,
                "canonical": text[:_SHOWN] + ("..." if len(text) > _SHOWN else ""),
                "canonical_bytes": len(zoho_canonical(params, signed_body)),
                "matches": {
                    enc: bool(signature)
                    and _same_signature(
                        zoho_signature(secret, params, signed_body, enc), signature or "", enc
                    )
                    for enc in ENCODINGS
                },
            }
        )
    return {
        "outcome": outcome,
        "encoding_setting": encoding,
        "headers": shown_headers,
        "query": _masked_params(list(query), hidden),
        "form_fields": [k for k, _ in form],
        "body_bytes": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "signature_received": (signature or "")[:100] or None,
        "token_received": bool(token),
        "token_matches": bool(token)
        and hmac.compare_digest(
            (token or "").encode("utf-8", "replace"), derive_token(secret).encode()
        ),
        "tried": tried,
    }


def load_public_keys(paths: Sequence[str]) -> list[rsa.RSAPublicKey]:
    keys = []
    for path in paths:
        data = Path(path).read_bytes()
        try:
            if b"CERTIFICATE" in data:
                from cryptography import x509

                key = x509.load_pem_x509_certificate(data).public_key()
            else:
                key = serialization.load_pem_public_key(data)
        except ValueError as exc:
            raise ConfigurationError(f"{path} is not a PEM public key or certificate") from exc
        if not isinstance(key, rsa.RSAPublicKey):
            raise ConfigurationError(f"{path} is not an RSA key")
        keys.append(key)
    return keys


def verify_concur(keys: Sequence[rsa.RSAPublicKey], *, body: bytes, signature: str | None) -> None:
    if not keys:
        raise WebhookSignatureError(
            "no Concur public key is configured (CONCUR_WEBHOOK_PUBLIC_KEYS); refusing unsigned events"
        )
    if not signature:
        raise WebhookSignatureError(f"missing {CONCUR_SIGNATURE_HEADER} header")
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookSignatureError(f"{CONCUR_SIGNATURE_HEADER} is not base64") from None
    for key in keys:
        try:
            key.verify(raw, body, padding.PKCS1v15(), hashes.SHA256())
            return
        except InvalidSignature:
            continue
    raise WebhookSignatureError(
        f"{CONCUR_SIGNATURE_HEADER} does not verify with any configured key"
    )
