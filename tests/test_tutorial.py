"""docs/tutorial.ipynb runs top to bottom in a real Jupyter kernel without an error cell, and is
rendered to HTML (out/tutorial.html) as an artifact of the test run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
nbconvert = pytest.importorskip("nbconvert")

ROOT = Path(__file__).resolve().parent.parent


def test_the_tutorial_runs_in_a_kernel_and_renders_to_html():
    nb = nbformat.read(ROOT / "docs" / "tutorial.ipynb", as_version=4)
    t0 = time.perf_counter()
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}})
    client.execute()
    seconds = time.perf_counter() - t0
    errors = [(i, o.get("ename"), o.get("evalue")) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    html_outputs = [o["data"]["text/html"] for o in outputs if "data" in o and "text/html" in o["data"]]
    assert any("one of Less, Greater, Equal" in h for h in html_outputs)  # the classifier's summary
    # the live panel of the classifier's training, as it was last drawn: the curves and round 60's figures
    assert any("data:image/png;base64," in h and "round 60: loss" in h for h in html_outputs)
    body, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    out = ROOT / "out"
    out.mkdir(exist_ok=True)
    (out / "tutorial.html").write_text(body)
    print(f"tutorial: {seconds:.1f} s in the kernel, {len(body) / 1e6:.2f} MB of HTML in {out / 'tutorial.html'}")
    assert os.path.getsize(out / "tutorial.html") > 10_000
