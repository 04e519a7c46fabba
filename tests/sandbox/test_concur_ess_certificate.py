"""The sandbox's ESS signing certificate (#14.10): the key SAP would publish, with an end date.

The connector reads it exactly as it reads SAP's yearly
``<year>.webhook.api.concursolutions.com.pem``: the certificate's key must verify the events the
sandbox signs, and its validity follows ``ess_certificate_days``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

try:
    from tests.sandbox.concur_fixtures import (
        ConcurHarness,
        ConcurReceiver,
        concur,
        concur_receiver,
    )
    from tests.sandbox.test_concur_events import pending_report, subscribe
except ImportError:
    from concur_fixtures import (  # type: ignore[no-redef]  # noqa: F401
        ConcurHarness,
        ConcurReceiver,
        concur,
        concur_receiver,
    )
    from test_concur_events import pending_report, subscribe  # type: ignore[no-redef]

import pytest
from cryptography import x509

from connector.errors import WebhookSignatureError
from connector.ess_keys import describe, expiry_warning
from webhooks.signatures import load_public_keys, verify_concur

CERT_PATH = "/_admin/concur/webhook-certificate.pem"


def test_certificate_key_verifies_the_sandbox_signatures(
    concur: ConcurHarness, concur_receiver: ConcurReceiver, tmp_path: Path
) -> None:
    answer = concur.http.get(f"{concur.url}{CERT_PATH}")
    assert answer.status_code == 200 and answer.content.startswith(b"-----BEGIN CERTIFICATE-----")
    pem = tmp_path / "sandbox-ess.pem"
    pem.write_bytes(answer.content)
    cert = x509.load_pem_x509_certificate(answer.content)
    left = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=364) < left <= timedelta(days=365)  # ess_certificate_days default

    bare = concur.http.get(f"{concur.url}/_admin/concur/public-key.pem").content
    (tmp_path / "bare.pem").write_bytes(bare)
    assert describe(pem).fingerprint == describe(tmp_path / "bare.pem").fingerprint

    assert subscribe(concur, concur_receiver.url).status_code == 200
    concur.admin.approve(pending_report(concur)["ID"])
    call = concur_receiver.wait_for(1)[0]
    keys = load_public_keys([str(pem)])  # the receiver's own loader
    verify_concur(keys, body=call["body"], signature=call["headers"]["Concur-Signature"])
    with pytest.raises(WebhookSignatureError):
        verify_concur(keys, body=call["body"] + b" ", signature=call["headers"]["Concur-Signature"])


def test_certificate_days_setting_makes_connector_config_warn(
    concur: ConcurHarness, tmp_path: Path
) -> None:
    assert concur.admin.settings(ess_certificate_days=20)["ess_certificate_days"] == 20
    pem = tmp_path / "short.pem"
    pem.write_bytes(concur.http.get(f"{concur.url}{CERT_PATH}").content)
    info = describe(pem)
    assert info.kind == "certificate" and info.not_valid_after is not None
    assert expiry_warning([info]) is not None
    refused = concur.http.post(
        f"{concur.url}/_admin/concur/settings", json={"ess_certificate_days": 0}
    )
    assert refused.status_code == 400
