"""What the configured Concur ESS signing keys are, and whether they are about to run out.

SAP rotates the key behind ``Concur-Signature`` about once a year, together with the webhook
client certificate (docs/security.md, "Concur ESS signing keys"). A receiver that still holds
only last year's key refuses every event from the switch on, and nothing else would say so until
expense reports stop arriving. ``connector config`` therefore lists each configured key with its
end date and warns while there is still time to add the next one.

Only a PEM holding an X.509 certificate carries an end date; a bare ``PUBLIC KEY`` (the form the
ESS page prints) has none, so it never triggers the warning. Describing a key never raises: an
unreadable file is reported as such, because the operator running ``connector config`` needs the
list, not a traceback (the receiver refuses to start on it separately).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

#: Warn when every configured key ends within this much time: SAP's lead time for publishing the
#: next key is UNCONFIRMED, and 30 days leaves room for a change window.
WARN_WITHIN = timedelta(days=30)


@dataclass(frozen=True)
class KeyInfo:
    """One configured PEM as ``connector config`` shows it.

    ``fingerprint`` is the SHA-256 of the DER SubjectPublicKeyInfo, so a certificate and the bare
    key inside it show the same value and can be matched against each other.
    """

    path: str
    kind: str  # "certificate", "public key" or "unreadable"
    fingerprint: str | None = None
    not_valid_after: datetime | None = None
    problem: str | None = None

    @property
    def end(self) -> str:
        """The end date as shown, or why there is none."""
        if self.kind == "unreadable":
            return f"unreadable ({self.problem})"
        if self.not_valid_after is None:
            return "no end date"
        return self.not_valid_after.strftime("%Y-%m-%d %H:%M:%S UTC")


def _fingerprint(key: object) -> str:
    der = key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()


def describe(path: str | Path) -> KeyInfo:
    """Read one PEM and say what it is; never raises (an unreadable file is a ``KeyInfo``)."""
    name = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return KeyInfo(name, "unreadable", problem=exc.strerror or type(exc).__name__)
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            cert = x509.load_pem_x509_certificate(data)
            return KeyInfo(
                name,
                "certificate",
                fingerprint=_fingerprint(cert.public_key()),
                not_valid_after=cert.not_valid_after_utc,
            )
        key = serialization.load_pem_public_key(data)
        return KeyInfo(name, "public key", fingerprint=_fingerprint(key))
    except (ValueError, TypeError) as exc:
        # cryptography raises ValueError for bad PEM/DER and TypeError for odd key types.
        return KeyInfo(name, "unreadable", problem=str(exc).split("\n")[0][:120] or "not a PEM")


def describe_all(paths: Sequence[str | Path]) -> list[KeyInfo]:
    return [describe(p) for p in paths]


def expiry_warning(
    keys: Sequence[KeyInfo], *, now: datetime | None = None, within: timedelta = WARN_WITHIN
) -> str | None:
    """A warning when EVERY configured key is a certificate ending within ``within``.

    One key that lasts (a later certificate, or a bare key with no date) is enough for the
    receiver to keep verifying, so there is nothing to warn about. Unreadable entries are not
    keys at all and are left out of the judgement; ``None`` when nothing is configured.
    """
    readable = [k for k in keys if k.kind != "unreadable"]
    if not readable:
        return None
    moment = now or datetime.now(UTC)
    limit = moment + within
    if any(k.not_valid_after is None or k.not_valid_after > limit for k in readable):
        return None
    last = max(k.not_valid_after for k in readable if k.not_valid_after is not None)
    left = last - moment
    when = "has ended" if left.total_seconds() <= 0 else f"ends in {left.days} day(s)"
    return (
        f"every Concur ESS signing key in CONCUR_WEBHOOK_PUBLIC_KEYS ends within "
        f"{within.days} days (the last {when}, {last:%Y-%m-%d}): add SAP's next key before the "
        "switch or Concur-Signature stops verifying (docs/security.md, "
        '"Concur ESS signing keys")'
    )
