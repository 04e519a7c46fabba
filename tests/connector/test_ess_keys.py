"""Concur ESS signing keys: what ``connector config`` shows and when it warns (#14.10).

The warning must come before SAP's switch, while there is time to add the next key, and only
when no configured key outlives the next 30 days.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from freezegun import freeze_time

from cli.main import main
from connector import config
from connector.ess_keys import describe, describe_all, expiry_warning

NOW = datetime(2026, 9, 1, 12, 0, 0, tzinfo=UTC)
TEST_KEY = "x8bQ7m2b0s6yQdG6D9b4b9o2s1Jm3e0kq8m7k4n5p6o="


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_cert(path: Path, key: rsa.RSAPrivateKey, not_after: datetime) -> Path:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "webhook.api.concursolutions.com")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=365))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def write_bare(path: Path, key: rsa.RSAPrivateKey) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


def test_certificate_has_its_end_date_and_the_keys_fingerprint(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    end = datetime(2027, 3, 27, 23, 59, 59, tzinfo=UTC)
    cert = describe(write_cert(tmp_path / "2027.pem", rsa_key, end))
    bare = describe(write_bare(tmp_path / "bare.pem", rsa_key))
    assert cert.kind == "certificate" and cert.not_valid_after == end
    assert cert.end == "2027-03-27 23:59:59 UTC"
    # Same key, same fingerprint: a bare key can be matched with the certificate it came from.
    assert cert.fingerprint == bare.fingerprint and len(cert.fingerprint or "") == 64


def test_bare_key_has_no_end_date(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    info = describe(write_bare(tmp_path / "bare.pem", rsa_key))
    assert info.kind == "public key" and info.not_valid_after is None
    assert info.end == "no end date"


@pytest.mark.parametrize(
    "content",
    [
        b"not a pem at all",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n",
        b"",
    ],
)
def test_unreadable_pem_is_reported_not_raised(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.pem"
    path.write_bytes(content)
    info = describe(path)
    assert info.kind == "unreadable" and info.fingerprint is None
    assert info.end.startswith("unreadable")
    missing = describe(tmp_path / "missing.pem")
    assert missing.kind == "unreadable"


@pytest.mark.parametrize(
    ("left", "warns"),
    [
        (timedelta(days=30), True),
        (timedelta(days=30, seconds=1), False),
        (timedelta(days=1), True),
        (timedelta(seconds=-1), True),  # already ended: still the operator's problem
    ],
)
def test_thirty_day_boundary(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, left: timedelta, warns: bool
) -> None:
    keys = describe_all([write_cert(tmp_path / "k.pem", rsa_key, NOW + left)])
    with freeze_time(NOW):
        warning = expiry_warning(keys)
    assert (warning is not None) is warns
    if warning:
        assert "CONCUR_WEBHOOK_PUBLIC_KEYS" in warning and "docs/security.md" in warning


def test_warns_only_when_every_key_is_close(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    old = write_cert(tmp_path / "old.pem", rsa_key, NOW + timedelta(days=10))
    new = write_cert(tmp_path / "new.pem", rsa_key, NOW + timedelta(days=200))
    bare = write_bare(tmp_path / "bare.pem", rsa_key)
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    with freeze_time(NOW):
        assert expiry_warning(describe_all([old])) is not None
        assert expiry_warning(describe_all([old, new])) is None  # the overlap: next key added
        assert expiry_warning(describe_all([old, bare])) is None  # a bare key has no end
        assert expiry_warning(describe_all([old, junk])) is not None  # junk is not a key
        assert expiry_warning(describe_all([junk])) is None
        assert expiry_warning([]) is None


@pytest.fixture
def run_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'connector.sqlite'}")
    monkeypatch.setenv("CONNECTOR_SECRET_KEY", TEST_KEY)
    monkeypatch.setenv("CONNECTOR_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CONNECTOR_PUBLIC_URL", "https://connector.example")

    def run(*paths: Path) -> Any:
        monkeypatch.setenv("CONCUR_WEBHOOK_PUBLIC_KEYS", ",".join(str(p) for p in paths))
        config.get_settings(reload=True)
        result = CliRunner().invoke(main, ["config"])
        assert result.exit_code == 0, (result.output, result.exception)
        return result

    yield run
    config._cached = None


def test_connector_config_lists_keys_and_warns_on_stderr(
    run_config: Any, tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    soon = write_cert(tmp_path / "soon.pem", rsa_key, NOW + timedelta(days=20))
    bare = write_bare(tmp_path / "bare.pem", rsa_key)
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    with freeze_time(NOW):
        warned = run_config(soon, junk)
        calm = run_config(soon, bare)
    assert "warning:" in warned.stderr and "warning:" not in warned.stdout
    assert str(soon) in warned.stdout and "2026-09-21" in warned.stdout
    assert "unreadable" in warned.stdout and "Traceback" not in warned.output
    assert "warning:" not in calm.stderr and "no end date" in calm.stdout
    fingerprint = describe(bare).fingerprint or ""
    assert f"sha256:{fingerprint[:16]}" in calm.stdout
