"""The sandbox's RSA key: ESS ``Concur-Signature`` and the RS256 signature on issued JWTs.

SAP publishes only the RSA-2048 public key that verifies ``Concur-Signature``; the hash, padding,
encoding and signed content are UNCONFIRMED. The sandbox picks one reading and keeps it in
``sign_event`` alone, so changing the reading is a one-function edit:

    Concur-Signature = base64( RSASSA-PKCS1-v1_5( SHA-256( raw request body bytes ) ) )

The key is generated once per process (not per reset) so a connector configured with the
downloaded public key keeps verifying across ``/_admin/reset``.
"""

from __future__ import annotations

import base64
import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

_lock = threading.Lock()
_key: rsa.RSAPrivateKey | None = None


def private_key() -> rsa.RSAPrivateKey:
    """The process-wide signing key, generated lazily (about 50 ms) on first use."""
    global _key
    with _lock:
        if _key is None:
            _key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return _key


def public_key_pem() -> bytes:
    """SubjectPublicKeyInfo PEM, the form SAP publishes its ESS key in."""
    return (
        private_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def certificate_pem(days: int = 365, *, now: datetime | None = None) -> bytes:
    """A self-signed X.509 certificate over the ESS signing key, valid ``days`` from ``now``.

    SAP publishes its signing key yearly inside ``<year>.webhook.api.concursolutions.com.pem``
    (the same key as the printed ``PUBLIC KEY``); serving one lets ``connector config`` show an
    end date and warn before it, exactly as with the real file.
    """
    start = (now or datetime.now(UTC)).replace(microsecond=0)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Zoho-Concur connector sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, "webhook.api.concursolutions.com"),
        ]
    )
    key = private_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - timedelta(minutes=5))
        .not_valid_after(start + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def sign_event(body: bytes) -> str:
    """The one place that decides what ``Concur-Signature`` means (see module docstring)."""
    sig = private_key().sign(body, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(sig).decode("ascii")


def verify_event(public_pem: bytes, body: bytes, signature: str) -> bool:
    """Check a ``Concur-Signature`` the way ``sign_event`` made it; for tests and the docs."""
    key = serialization.load_pem_public_key(public_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(base64.b64decode(signature), body, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_jwt(claims: dict[str, Any], kid: str = "sandbox-concur") -> str:
    """RS256 JWT so issued tokens look like Concur's (clients sometimes decode ``sub``/``exp``)."""
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    signing_input = (
        _b64url(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + _b64url(json.dumps(claims, separators=(",", ":")).encode())
    )
    sig = private_key().sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return signing_input + "." + _b64url(sig)
