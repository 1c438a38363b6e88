"""What a model folder says about itself (its Hugging Face card), for results.json and the model card."""
from __future__ import annotations

import re
from pathlib import Path


def model_card_facts(folder: Path) -> dict:
    """License and title from a model folder's README (Hugging Face card front matter), when present."""
    readme = folder / "README.md"
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8", errors="replace")[:20000]
    facts = {}
    m = re.search(r"^license:\s*([\w.\-]+)\s*$", text, re.M)
    if m:
        facts["license"] = m.group(1)
    m = re.search(r"^#\s+(\S.*?)\s*$", text, re.M)
    if m:
        facts["title"] = m.group(1)[:100]
    return facts
