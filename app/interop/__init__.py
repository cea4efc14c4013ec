"""Adapters for published protocols: they parse and verify a protocol's messages and call the
requests services; no request logic lives in them."""
