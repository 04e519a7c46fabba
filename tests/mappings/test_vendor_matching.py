"""Vendor matching (code rule, tax id, normalized name + country, ambiguity), the field maps and
the three-way diff with the master rule: pure functions, no sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from mappings import vendors as vm
from mappings import vendors_payloads, vendors_rules, vendors_values

RULES = vendors_rules.VendorRules()


def zoho(
    cid: str,
    name: str,
    *,
    code: str | None = None,
    tax: str | None = None,
    country: str | None = "US",
    **values: Any,
) -> vm.ZohoVendor:
    base = dict.fromkeys(vendors_rules.FIELDS)
    base.update(name=name, tax_id=tax, country_code=country, **values)
    return vm.ZohoVendor(cid, base, vendors_values.normalize_code(code) or None)


def concur(
    code: str, name: str, *, addr: str = "MAIN", tax: str | None = None, country: str = "US"
) -> vm.ConcurVendor:
    base = dict.fromkeys(vendors_rules.FIELDS)
    base.update(name=name, tax_id=tax, country_code=country, currency_code="USD")
    return vm.ConcurVendor(code, addr, base)


# --------------------------------------------------------------------------- normalization


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("Uber Technologies, Inc.", "uber technologies"),
        ("UBER  TECHNOLOGIES", "uber technologies"),
        ("Deutsche Bahn AG", "deutsche bahn"),
        ("Foo Holdings Co., Ltd.", "foo holdings"),
        ("Siemens G.m.b.H.", "siemens"),
        ("Müller GmbH & Co. KG", "muller"),
        ("Procter & Gamble", "procter and gamble"),
        ("Société Générale S.A.", "societe generale"),
        ("Co", "co"),
        ("", ""),
    ],
)
def test_name_normalization(raw: str, key: str) -> None:
    assert vendors_values.normalize_name(raw) == key


@pytest.mark.parametrize(
    ("text", "iso"),
    [("U.S.A", "US"), ("United States", "US"), ("Germany", "DE"), ("de", "DE"), ("U.K", "GB"),
     ("Narnia", None), ("", None), (None, None)],
)  # fmt: skip
def test_country_text_to_iso(text: str | None, iso: str | None) -> None:
    assert vendors_values.country_code(text) == iso


# --------------------------------------------------------------------------- matching order


def test_code_rule_beats_name() -> None:
    z = [zoho("1", "Acme Office", code="acme001"), zoho("2", "Hertz Corporation")]
    c = [concur("ACME001", "Completely Different Name"), concur("HERTZ", "Hertz Corp.")]
    result = vm.match(z, c)
    assert {(p[0].contact_id, p[1].code, p[2]) for p in result.pairs} == {
        ("1", "ACME001", "code"),
        ("2", "HERTZ", "name"),
    }
    assert not result.ambiguous and not result.zoho_only and not result.concur_only


def test_tax_id_before_name_and_normalized() -> None:
    z = [zoho("1", "Initech", tax="DE 123-456-789")]
    c = [concur("INI", "Initech Europe", tax="DE123456789"), concur("INI2", "Initech")]
    result = vm.match(z, c)
    assert [(p[1].code, p[2]) for p in result.pairs] == [("INI", "tax_id")]
    assert [v.code for v in result.concur_only] == ["INI2"]


def test_name_match_needs_agreeing_countries() -> None:
    z = [zoho("1", "Accor Hotels", country="FR"), zoho("2", "Globex", country=None)]
    c = [concur("ACCOR", "Accor Hotels", country="DE"), concur("GLOBEX", "Globex Corporation")]
    result = vm.match(z, c)
    assert [(p[0].contact_id, p[1].code) for p in result.pairs] == [("2", "GLOBEX")]
    assert [v.contact_id for v in result.zoho_only] == ["1"]


def test_stable_generated_code_when_the_code_field_is_empty() -> None:
    z = zoho("460000000099", "No Code Ltd")
    assert z.effective_code() == "ZB460000000099"
    assert vm.match([z], [concur("ZB460000000099", "Renamed")]).pairs[0][2] == "code"


def test_code_from_custom_field() -> None:
    rules = vendors_rules.VendorRules(code_from="Concur Vendor Code")
    contact = {
        "contact_id": "9",
        "contact_name": "X",
        "custom_fields": [{"label": "Concur Vendor Code", "value": "xcorp", "index": 1}],
    }
    assert vendors_values.zoho_code(contact, rules) == "XCORP"
    assert vendors_values.zoho_code({**contact, "custom_fields": []}, rules) is None
    by_api_name = vendors_rules.VendorRules(code_from="cf_concur_code")
    assert (
        vendors_values.zoho_code(
            {"custom_fields": [{"api_name": "cf_concur_code", "value": "Y1"}]}, by_api_name
        )
        == "Y1"
    )


# --------------------------------------------------------------------------- ambiguity


def test_two_candidates_link_nothing_and_stop_weaker_rules() -> None:
    z = [zoho("1", "Vandelay Industries")]
    c = [concur("VANDEL1", "Vandelay Industries"), concur("VANDEL2", "Vandelay Industries")]
    result = vm.match(z, c)
    assert result.pairs == []
    [amb] = result.ambiguous
    assert amb.reason == "name_match"
    assert amb.zoho == ["1"] and sorted(amb.concur) == ["VANDEL1/MAIN", "VANDEL2/MAIN"]
    assert not result.zoho_only and not result.concur_only  # decided as ambiguous, not "only"


def test_ambiguity_on_the_zoho_side_too() -> None:
    z = [zoho("1", "Acme", tax="X1"), zoho("2", "Acme Two", tax="X1")]
    result = vm.match(z, [concur("ACME", "Acme Inc", tax="X1")])
    assert result.pairs == [] and result.ambiguous[0].reason == "tax_id_match"
    assert sorted(result.ambiguous[0].zoho) == ["1", "2"]


def test_one_remit_to_address_per_vendor_code() -> None:
    records = [
        concur("GLOBEX", "Globex Corporation", addr="REMIT2"),
        concur("GLOBEX", "Globex Corporation", addr="HQ"),
        concur("ACME", "Acme", addr="MAIN"),
        concur("ACME", "Acme", addr="ALT"),
    ]
    chosen, others = vm.primary_addresses(records, "MAIN")
    assert chosen["GLOBEX"].address_code == "HQ"  # no MAIN: the first address code
    assert chosen["ACME"].address_code == "MAIN"  # the configured address code
    assert sorted(o.ref for o in others) == ["ACME/ALT", "GLOBEX/REMIT2"]
    linked, _ = vm.primary_addresses(records, "MAIN", linked=[("globex", "remit2")])
    assert linked["GLOBEX"].address_code == "REMIT2"  # a link wins


# --------------------------------------------------------------------------- field maps


ZOHO_CONTACT = {
    "contact_id": "46000000000045",
    "contact_name": "Delta Air Lines",
    "company_name": "Delta Air Lines",
    "contact_type": "vendor",
    "contact_number": "V-00001",
    "currency_code": "usd",
    "payment_terms": 30,
    "tax_reg_no": "58-0218548",
    "billing_address": {
        "address": "1030 Delta Blvd", "street2": "Dept 980", "city": "Atlanta", "state": "GA",
        "zip": "30354", "country": "U.S.A",
    },
    "contact_persons": [
        {"first_name": "Pat", "last_name": "Other", "email": "x@y", "is_primary_contact": False},
        {"first_name": "Alex", "last_name": "Morgan", "email": "ap@delta.example",
         "is_primary_contact": True},
    ],
    "last_modified_time": "2025-06-02T02:00:00-0700",
}  # fmt: skip


def test_zoho_contact_to_canonical_and_concur_body() -> None:
    values = vendors_values.zoho_values(ZOHO_CONTACT, RULES)
    assert values == {
        "name": "Delta Air Lines", "address1": "1030 Delta Blvd", "address2": "Dept 980",
        "city": "Atlanta", "state": "GA", "postal_code": "30354", "country_code": "US",
        "currency_code": "USD", "payment_terms": "30", "tax_id": "58-0218548",
        "contact_first_name": "Alex", "contact_last_name": "Morgan",
        "contact_email": "ap@delta.example",
    }  # fmt: skip
    body = vendors_payloads.concur_body(values, "V-00001", "MAIN")
    assert body == {
        "VendorCode": "V-00001", "AddressCode": "MAIN", "VendorName": "Delta Air Lines",
        "Address1": "1030 Delta Blvd", "Address2": "Dept 980", "City": "Atlanta", "State": "GA",
        "PostalCode": "30354", "CountryCode": "US", "CurrencyCode": "USD", "PaymentTerms": "30",
        "TaxID": "58-0218548", "ContactFirstName": "Alex", "ContactLastName": "Morgan",
        "ContactEmail": "ap@delta.example",
    }  # fmt: skip
    assert vendors_values.concur_values(body) == values  # the round trip is lossless


def test_concur_vendor_to_zoho_contact_body() -> None:
    vendor = {
        "VendorCode": "HOOLI", "AddressCode": "MAIN", "VendorName": "Hooli Cloud Services",
        "Address1": "1 Hooli Plaza", "City": "Palo Alto", "State": "CA", "PostalCode": "94301",
        "CountryCode": "US", "CurrencyCode": "USD", "PaymentTerms": "45",
        "ContactEmail": "ap@hooli.example", "ContactFirstName": "Gavin",
        "PaymentMethodType": "CHECK",
    }  # fmt: skip
    body = vendors_payloads.zoho_body(
        vendors_values.concur_values(vendor), RULES, code="HOOLI", currency_id="3000"
    )
    assert body == {
        "contact_name": "Hooli Cloud Services", "company_name": "Hooli Cloud Services",
        "contact_type": "vendor", "contact_number": "HOOLI",
        "ignore_auto_number_generation": True, "currency_id": "3000", "payment_terms": 45,
        "payment_terms_label": "Net 45",
        "billing_address": {"address": "1 Hooli Plaza", "city": "Palo Alto", "state": "CA",
                            "zip": "94301", "country": "U.S.A"},
        "contact_persons": [{"first_name": "Gavin", "email": "ap@hooli.example",
                             "is_primary_contact": True}],
    }  # fmt: skip
    # PaymentMethodType has no Zoho field: nothing is sent for it.
    assert "PaymentMethodType" not in str(body)


def test_zoho_update_keeps_the_rest_of_the_address_and_other_persons() -> None:
    body = vendors_payloads.zoho_body(
        {"city": "Decatur", "contact_email": "new@delta.example"},
        RULES,
        only=["city", "contact_email"],
        current=ZOHO_CONTACT,
    )
    assert body["contact_name"] == "Delta Air Lines"
    assert body["billing_address"]["city"] == "Decatur"
    assert body["billing_address"]["address"] == "1030 Delta Blvd"
    persons = body["contact_persons"]
    assert len(persons) == 2 and persons[1]["email"] == "new@delta.example"
    assert persons[0]["email"] == "x@y"
    assert set(body) == {"contact_name", "billing_address", "contact_persons"}


def test_zero_payment_terms_means_not_set() -> None:
    assert (
        vendors_values.zoho_values({**ZOHO_CONTACT, "payment_terms": 0}, RULES)["payment_terms"]
        is None
    )
    assert vendors_values.concur_values({"PaymentTerms": "1000"})["payment_terms"] is None


# --------------------------------------------------------------------------- three-way diff


def vals(**kw: str | None) -> dict[str, str | None]:
    base = dict.fromkeys(vendors_rules.FIELDS, "same")
    base.update(kw)
    return base


def test_change_on_one_side_goes_to_the_other() -> None:
    base = vals()
    d = vm.three_way(vals(city="New"), base, base, base, "concur")
    assert d.to_concur == {"city": "New"} and not d.to_zoho and not d.conflicts
    d = vm.three_way(base, vals(state="NY"), base, base, "zoho")
    assert d.to_zoho == {"state": "NY"} and not d.to_concur and not d.conflicts


@pytest.mark.parametrize("master", ["zoho", "concur"])
def test_both_sides_changed_master_wins(master: str) -> None:
    base = vals()
    d = vm.three_way(vals(city="Z"), vals(city="C"), base, base, master)
    [conflict] = d.conflicts
    if master == "zoho":
        assert d.to_concur == {"city": "Z"} and not d.to_zoho
        assert (conflict.winner, conflict.loser_value) == ("zoho", "C")
    else:
        assert d.to_zoho == {"city": "C"} and not d.to_concur
        assert (conflict.winner, conflict.loser_value) == ("concur", "Z")
    assert conflict.as_dict()["loser"] == ("concur" if master == "zoho" else "zoho")


def test_same_change_on_both_sides_is_no_conflict() -> None:
    base = vals()
    d = vm.three_way(vals(city="X"), vals(city="X"), base, base, "zoho")
    assert d.empty and not d.conflicts


def test_fields_one_side_lacks_are_left_alone() -> None:
    base = vals(tax_id=None)
    # Zoho has no tax id and never had; Concur has one: nothing is written anywhere.
    d = vm.three_way(vals(tax_id=None), vals(tax_id="T1"), base, vals(tax_id="T1"), "zoho")
    assert d.empty
    # A value cleared on one side is not pushed as a blank to the other.
    d = vm.three_way(vals(city=None), vals(), vals(), vals(), "zoho")
    assert d.empty


def test_a_new_link_fills_blanks_and_applies_the_master_rule() -> None:
    d = vm.three_way(vals(state=None, city="Z"), vals(state="GA", city="C"), None, None, "zoho")
    assert d.to_zoho == {"state": "GA"}
    assert d.to_concur == {"city": "Z"}
    assert [c.field for c in d.conflicts] == ["city"]


def test_rules_section_defaults_and_validation() -> None:
    assert vendors_rules.parse_rules({}) == vendors_rules.VendorRules()
    r = vendors_rules.parse_rules({"master": "concur", "code_from": "Concur Code", "address_code": "hq",
                        "directions": ["concur_to_zoho"], "default_country": "DE"})  # fmt: skip
    assert (r.master, r.address_code, r.to_concur, r.to_zoho, r.code_in_custom_field) == (
        "concur", "HQ", False, True, True,
    )  # fmt: skip
    with pytest.raises(ValueError):
        vendors_rules.parse_rules({"master": "both"})
    with pytest.raises(ValueError):
        vendors_rules.parse_rules({"directions": ["sideways"]})
