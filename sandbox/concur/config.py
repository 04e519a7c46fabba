"""Constants and run-time knobs of the simulated SAP Concur.

Everything a test or the docs needs to name (data centres, the sandbox OAuth client, the seeded
companies) lives here so the values are written once; the knobs are a mutable dataclass because
the admin API flips them at run time (rotation on/off, 401 vs 403 on expiry, per-endpoint limits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Data centres served at ``{base}/concur/{geo}``. Add a name here to open another one.
GEOS: tuple[str, ...] = ("us2", "eu2")

CLIENT_ID = "sandbox-concur-client"
CLIENT_SECRET = "sandbox-concur-secret"
APP_ID = CLIENT_ID  # the App JWT's subject and the ESS ``applicationId``

# Seeded companies. The UUIDs and request tokens are fixed so docs and tests can quote them.
SEED_US_COMPANY_ID = "9d6f3a52-0c1e-4d7b-9a35-5b1f0c2e7a11"
SEED_US_REQUEST_TOKEN = "sbx-us2-company-request-token"
SEED_EU_COMPANY_ID = "3c2b7e90-5e44-4a0f-8d21-7f6a9b8c4d22"
SEED_EU_REQUEST_TOKEN = "sbx-eu2-company-request-token"

ACCESS_TOKEN_TTL = 3600  # 1 hour, documented
APP_TOKEN_TTL = 3600  # client_credentials JWT: 60 minutes, documented
REFRESH_TOKEN_TTL = 183 * 24 * 3600  # "6 months"
REQUEST_TOKEN_TTL = 24 * 3600  # company request token: 24 hours, reusable within it

COMPANY_SCOPES = (
    "openid INVPMT INVVEN EXPRPT expense.report.read expense.report.readwrite "
    "user.read company.read"
)
APP_SCOPES = "events.topic.read expense.report.read"

ESS_TOPIC = "public.concur.expense.report"
ESS_MAX_SUBSCRIPTIONS = 5

# Endpoint names used by per-endpoint rate limits and request statistics.
ENDPOINTS: tuple[str, ...] = (
    "paymentrequest",
    "paymentrequestdigests",
    "vendors",
    "reports",
    "entries",
    "allocations",
    "expensereports_v4",
    "events",
)

VENDOR_BATCH_MAX = 1000  # UNCONFIRMED in the docs; mirrors the other v3 batch APIs
VENDOR_LIMIT_MAX = 1000
ALLOCATIONS_LIMIT_MAX = 100
REPORTS_LIMIT_MAX = 100  # UNCONFIRMED; larger requests are clamped, so clients must page
DIGEST_LIMIT_DEFAULT = 1000

# Countries whose vendors must carry a State (SAP export-control policy; the doc names Ukraine).
STATE_REQUIRED_COUNTRIES = frozenset({"UA"})


# ``custom_field_spelling`` values: which names payment requests may use for custom and org-unit
# fields. The reference page lists ``Custom1``…``Custom24`` ("plain"); only the Swagger's POST/PUT
# definitions say ``Custom01`` ("padded"). Which one the real server takes is UNCONFIRMED, so the
# default accepts both and a test can make the sandbox refuse the other one.
CUSTOM_FIELD_SPELLINGS: tuple[str, ...] = ("both", "plain", "padded")

# ``vendor_search_shape`` values: the Vendor v3.1 reference documents ``{"Items": [...]}``
# ("items"); the batch POST/PUT bodies use ``{"Vendor": [...]}`` ("vendor"), and the XML
# answer translated to JSON nests them, ``{"Items": {"Vendor": [...]}}`` ("items_vendor").
VENDOR_SEARCH_SHAPES: tuple[str, ...] = ("items", "vendor", "items_vendor")


@dataclass
class ConcurSettings:
    """Knobs the admin API changes; reset to these defaults on every sandbox reset."""

    rotate_refresh_tokens: bool = False
    # "401", "403" or "alternate": an expired access token is refused with this status.
    expired_token_status: str = "alternate"
    # The main doc shows ``"expires_in": "3600"`` (a string), other examples a number.
    expires_in_as_string: bool = True
    # Which custom-field spelling payment requests may use (see CUSTOM_FIELD_SPELLINGS).
    custom_field_spelling: str = "both"
    # Days the self-signed certificate at /_admin/concur/webhook-certificate.pem is valid from
    # now: SAP publishes its ESS key inside a certificate that ends, and `connector config`
    # warns before it does.
    ess_certificate_days: int = 365
    # How a vendor search answers (see VENDOR_SEARCH_SHAPES); which one the real server uses
    # is UNCONFIRMED, the connector reads all three.
    vendor_search_shape: str = "items"
    # (company_id or "*", endpoint) -> (limit, period seconds)
    limits: dict[tuple[str, str], tuple[int, float]] = field(default_factory=dict)
