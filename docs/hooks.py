"""MkDocs hooks: make ``docs/figures.py`` importable from the executed pages, draw
figures without a display, and render the pages' equations to MathML at build time (the
site needs no script and no network to show them)."""

import html
import logging
import os
import re
import sys
from pathlib import Path

from latex2mathml.converter import convert

DOCS = Path(__file__).resolve().parent
log = logging.getLogger("mkdocs.hooks.math")

# pymdownx.arithmatex (generic mode) wraps \( \) in a span and \[ \] in a div
_MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<display>.*?)\\\])\s*</(?P=tag)>",
    re.DOTALL,
)
_INLINE_IN_TITLE = re.compile(r"\\\((?P<tex>.*?)\\\)", re.DOTALL)
# latex2mathml lays out align* as a table; aligned inside \[ \] means the same layout
_ALIGNED = re.compile(r"\\(begin|end)\{aligned\}")


def on_startup(command, dirty):
    del command, dirty
    os.environ.setdefault("MPLBACKEND", "Agg")
    if str(DOCS) not in sys.path:
        sys.path.insert(0, str(DOCS))


def mathml(tex, display, where):
    """The MathML of one TeX expression (HTML-escaped as the page holds it); a warning, which
    fails a strict build, where latex2mathml cannot read it."""
    source = _ALIGNED.sub(r"\\\1{align*}", html.unescape(tex).strip())
    try:
        return convert(source, display="block" if display else "inline")
    except Exception as error:  # latex2mathml raises its own exception types
        log.warning("%s: cannot render the equation %r to MathML: %s", where, source, error)
        return html.escape(source)


def _render_titles(items, where):
    for item in items:
        item.title = _INLINE_IN_TITLE.sub(lambda m: mathml(m["tex"], False, where), item.title)
        _render_titles(item.children, where)


def on_page_content(content, page, config, files):
    del config, files
    where = page.file.src_uri

    def replace(match):
        display = match["display"] is not None
        rendered = mathml(match["display"] if display else match["inline"], display, where)
        tag = "div" if display else "span"
        return f'<{tag} class="arithmatex">{rendered}</{tag}>'

    _render_titles(page.toc, where)
    return _MATH.sub(replace, content)
