"""Renderers: read results.json (plain data) and write report.html, model_card.md, junit.xml, summary.md,
compliance.md. Nothing here imports torch, fairlearn, evidently or captum."""
from __future__ import annotations

from .writer import ARTIFACTS, render_all, render_one

__all__ = ["ARTIFACTS", "render_all", "render_one"]
