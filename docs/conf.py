"""Sphinx configuration of the llmregressor documentation.

Build (offline, warnings are errors)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import sys
from pathlib import Path

# Document the package of this checkout, not some other installed copy.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import llmregressor  # noqa: E402

project = "llmregressor"
author = "llmregressor developers"
copyright = "llmregressor developers"
release = llmregressor.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

# Autodoc imports the package to read its docstrings; keep the signatures short and let
# the numpydoc "Parameters" sections carry the types.
autodoc_typehints = "none"
autodoc_member_order = "bysource"
# numpydoc would otherwise add an autosummary table of every method and attribute, which
# needs generated stub pages; the members are documented in place instead.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# Markdown pages link to headings of docs/benchmarks.md and docs/experiment_log.md
# ("experiment_log.md#rl-vs-sft-accuracy"), which stay Markdown because the benchmark
# scripts rewrite their sections in place.
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"llmregressor {release}"
# No intersphinx and no remote assets: the build runs offline.
html_static_path: list[str] = []
