"""Sphinx configuration of es-doctor's documentation site (``bash scripts/docs.sh`` builds it into ``site/``).

Sphinx with MyST Markdown and the furo theme: see "Decisions" (internals/decisions.md) for why.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from es_doctor import __version__  # noqa: E402

project = "es-doctor"
author = "the es-doctor team"
copyright = "es-doctor contributors, MIT licence"  # noqa: A001
release = version = __version__

extensions = ["myst_parser"]
source_suffix = {".md": "markdown"}
root_doc = "index"
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
# reference/_*.md: snippets included by the how-to pages
exclude_patterns = ["_build", "reference/_*.md", "*.schema.json"]
html_theme = "furo"
html_title = f"es-doctor {__version__}"
html_static_path: list[str] = []
html_copy_source = False
html_show_sourcelink = False
# every warning is an error (scripts/docs.sh passes -W --keep-going); a missing reference target too
nitpicky = False
suppress_warnings: list[str] = []
