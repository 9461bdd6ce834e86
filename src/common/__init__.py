"""The gateway's domain: everything the thin handlers in `handlers/` call into."""
