"""Zoho data centres as the sandbox lays them out on one host.

Real Zoho puts each data centre on its own host (accounts.zoho.eu, www.zohoapis.eu, ...). The
sandbox has only 127.0.0.1, so each data centre gets a path prefix instead; a client that honours
``accounts-server`` and ``api_domain`` never needs to know the difference.
"""

from __future__ import annotations

# location code (as sent in the OAuth redirect) -> (real accounts server, real api domain)
DATA_CENTRES: dict[str, tuple[str, str]] = {
    "us": ("https://accounts.zoho.com", "https://www.zohoapis.com"),
    "eu": ("https://accounts.zoho.eu", "https://www.zohoapis.eu"),
    "in": ("https://accounts.zoho.in", "https://www.zohoapis.in"),
    "au": ("https://accounts.zoho.com.au", "https://www.zohoapis.com.au"),
    "jp": ("https://accounts.zoho.jp", "https://www.zohoapis.jp"),
    "ca": ("https://accounts.zohocloud.ca", "https://www.zohoapis.ca"),
    "cn": ("https://accounts.zoho.com.cn", "https://www.zohoapis.com.cn"),
    "sa": ("https://accounts.zoho.sa", "https://www.zohoapis.sa"),
}


def accounts_server(base_url: str, dc: str) -> str:
    return f"{base_url}/zoho/{dc}/accounts"


def api_domain(base_url: str, dc: str) -> str:
    return f"{base_url}/zoho/{dc}/api"
