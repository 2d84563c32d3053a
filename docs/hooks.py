"""MkDocs hooks: make ``docs/figures.py`` importable from the executed pages, draw
figures without a display, render the pages' equations to MathML at build time (the
site needs no script and no network to show them), and link the docs pages that the
docstrings name as paths (``docs/numerics.md``)."""

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


# a docs page named in a docstring or a code span, e.g. `docs/numerics.md`
_DOCS_PATH = re.compile(r"<code>docs/(?P<path>[\w./-]+?)\.md(?P<anchor>#[\w-]+)?</code>")


def _link_docs_paths(content, page, files):
    """Code spans that name a page of the site (``docs/numerics.md``) become links to it."""

    def replace(match):
        target = files.get_file_from_path(f"{match['path']}.md")
        if target is None:
            return match[0]
        depth = page.url.count("/")
        href = "../" * depth + target.url + (match["anchor"] or "")
        return f'<a href="{href}">{match[0]}</a>'

    return _DOCS_PATH.sub(replace, content)


def on_page_content(content, page, config, files):
    del config
    where = page.file.src_uri
    content = _link_docs_paths(content, page, files)

    def replace(match):
        display = match["display"] is not None
        rendered = mathml(match["display"] if display else match["inline"], display, where)
        tag = "div" if display else "span"
        return f'<{tag} class="arithmatex">{rendered}</{tag}>'

    _render_titles(page.toc, where)
    return _MATH.sub(replace, content)
