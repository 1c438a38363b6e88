"""Shipped policies, installed as transfer_audit.policies (field reference: README.md)."""
