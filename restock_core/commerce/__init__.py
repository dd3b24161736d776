"""The commerce surface for a shop's backend (secret API key): the Sequenzy-shaped
back-in-stock sign-up and product upsert, orders for revenue attribution and the
conversion report. See docs/api.md and docs/attribution.md."""
