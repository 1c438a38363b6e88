"""Runnable example specs, installed as transfer_audit.examples; `transfer-audit demo NAME` runs one."""
