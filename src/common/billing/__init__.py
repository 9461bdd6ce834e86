"""Money: the catalog and its prices, tokens, the ledger (reserve, settle, release, sweep) and
what a customer can read about their own spending."""
