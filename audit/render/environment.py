"""The two jinja environments: HTML/XML with autoescape always on, Markdown with every value escaped."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent.parent.parent / "reports" / "templates"
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|~])")


class Raw(str):
    """A string we built ourselves (YAML front matter from yaml.safe_dump): printed as is in Markdown."""


def md_escape(value) -> str:
    """Untrusted text in Markdown: no HTML, no links, no table breaks, one line."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _finalize_md(value):
    if value is None:
        return ""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, (int, float)):
        return value
    return md_escape(value)


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) >= 10 ** -digits or value == 0 else f"{value:.2e}"
    return str(value)


def fmt_ci(ci, digits: int = 3) -> str:
    if not ci:
        return "n/a"
    return f"[{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def _common(env):
    env.filters["fmt"] = fmt
    env.filters["fmt_ci"] = fmt_ci
    return env


@lru_cache(maxsize=1)
def html_env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    # autoescape=True, not select_autoescape: the latter leaves *.html.j2 unescaped.
    return _common(Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True,
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True))


@lru_cache(maxsize=1)
def md_env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=False, undefined=StrictUndefined,
                      finalize=_finalize_md, trim_blocks=True, lstrip_blocks=True)
    return _common(env)
