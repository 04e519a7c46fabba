"""Webhook authentication: one function per scheme, so an unconfirmed algorithm is one edit.

Zoho Books (UNCONFIRMED for Books; documented for Zoho Billing, brief §7): hex HMAC-SHA256 with
the connection's secret over the canonical string = every query-string and form parameter sorted
by key, each written key+value with no separator, then the raw body (empty for a form post).
Where a customer cannot sign, a shared token in ``X-Connector-Token`` or ``?token=`` is accepted
instead.

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

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connector.errors import ConfigurationError, WebhookSignatureError

ZOHO_SIGNATURE_HEADER = "X-Zoho-Webhook-Signature"
TOKEN_HEADER = "X-Connector-Token"
TOKEN_PARAM = "token"
CONCUR_SIGNATURE_HEADER = "Concur-Signature"


def zoho_canonical(params: Iterable[tuple[str, str]], body: bytes) -> bytes:
    return "".join(k + v for k, v in sorted(params)).encode("utf-8") + body


def verify_zoho(
    secret: str,
    *,
    params: Iterable[tuple[str, str]],
    body: bytes,
    signature: str | None,
    token: str | None,
) -> str:
    """Accept a valid signature or shared token; return which one, raise otherwise."""
    if signature:
        expected = hmac.new(
            secret.encode(), zoho_canonical(params, body), hashlib.sha256
        ).hexdigest()
        if hmac.compare_digest(expected, signature.strip().lower()):
            return "signature"
        raise WebhookSignatureError(
            f"{ZOHO_SIGNATURE_HEADER} does not match this connection's secret"
        )
    if token:
        if hmac.compare_digest(token.encode(), secret.encode()):
            return "token"
        raise WebhookSignatureError("the shared token does not match this connection's secret")
    raise WebhookSignatureError(
        f"unauthenticated: send {ZOHO_SIGNATURE_HEADER}, or the shared token in {TOKEN_HEADER} "
        f"or ?{TOKEN_PARAM}="
    )


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
