"""CRM connectors: caller lookup in HubSpot, Pipedrive, bexio, Microsoft 365, Odoo, Zendesk and Zammad.

Each module is one CRM. The shared pieces are the HTTP client with rate limits
(`http`, `ratelimit`), the error codes the page translates (`errors`), call notes
(`calls`), the connector base with its actions (`base`), synced copies (`sync`),
Microsoft sign-in (`entra`) and the action store (`store`).
"""
