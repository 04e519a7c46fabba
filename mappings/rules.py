"""Plugs each flow's own rules-section schema into the registry of ``connector.rules``.

``connector`` holds the mechanism and placeholder schemas; the flows' schemas live here in
``mappings`` (which may import ``connector``, never the reverse). Entry points that read or
import rules (the CLI, the flows' tasks) call :func:`register_flow_sections` first.
"""

from __future__ import annotations

from connector import rules


def register_flow_sections() -> None:
    """Replace the placeholder sections by the flows' schemas (idempotent)."""
    from mappings.expenses_rules import ExpensesSectionSchema
    from mappings.payables_rules import PayablesSectionSchema

    rules.register_section("payables", PayablesSectionSchema, accounts=("expense_types.@",))
    rules.register_section(
        "expenses",
        ExpensesSectionSchema,
        accounts=("accounts.*", "default_account", "credit_accounts.*"),
        tags=("cost_centre.tag",),
        tag_options=(("cost_centre.options.*", "cost_centre.tag"),),
    )
    # The vendors section (issue #5): code_from also names a Zoho custom field; tax_id_field,
    # default_country.
    from mappings.vendors_rules import VendorsSectionSchema

    rules.register_section("vendors", VendorsSectionSchema)
