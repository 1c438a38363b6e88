"""Report templates (templates/) and the compliance map, installed as transfer_audit.reports."""
