"""The documentation builds offline and without a single warning."""

import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / "html"
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", DOCS, out],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    api = (out / "api.html").read_text(encoding="utf-8")
    # autodoc really imported the package: the estimator's methods are documented.
    for name in ("LLMRegressor.fit", "LLMRegressor.predict_quantiles", "codecs.make_codec"):
        assert f'id="llmregressor.{name}"' in api
    # The benchmark page is the Markdown file the benchmark scripts rewrite.
    assert "RL rollout and step speed" in (out / "benchmarks.html").read_text(encoding="utf-8")
