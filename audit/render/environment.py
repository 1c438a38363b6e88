"""The two jinja environments, both with autoescape on; the Markdown one also escapes Markdown syntax."""
from __future__ import annotations

import re
from functools import lru_cache

from ..packaged import templates_dir

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")


def Raw(text: str):
    """A string we built ourselves (YAML front matter from yaml.safe_dump): printed as is."""
    from markupsafe import Markup

    return Markup(text)


def md_escape(value) -> str:
    """The Markdown half of escaping untrusted text: no links, emphasis or table breaks, one line. The HTML
    half (& < > quotes) is jinja's autoescape, applied after this."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _finalize_md(value):
    from markupsafe import Markup

    if value is None:
        return ""
    if isinstance(value, (Markup, int, float)):
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
    from ..presentation import group_label

    env.filters["fmt"] = fmt
    env.filters["fmt_ci"] = fmt_ci
    env.filters["group"] = group_label
    return env


@lru_cache(maxsize=1)
def html_env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    # autoescape=True for every template: choosing by file extension would leave *.html.j2 unescaped.
    return _common(Environment(loader=FileSystemLoader(str(templates_dir())), autoescape=True,
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True))


@lru_cache(maxsize=1)
def md_env():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(str(templates_dir())), autoescape=True, undefined=StrictUndefined,
                      finalize=_finalize_md, trim_blocks=True, lstrip_blocks=True)
    return _common(env)
