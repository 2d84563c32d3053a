"""MkDocs hooks: make ``docs/figures.py`` importable from the executed pages and draw
figures without a display."""

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def on_startup(command, dirty):
    del command, dirty
    os.environ.setdefault("MPLBACKEND", "Agg")
    if str(DOCS) not in sys.path:
        sys.path.insert(0, str(DOCS))
