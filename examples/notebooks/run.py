"""Executes joint_credit_model.ipynb headless (nbclient), as CI does; fails on any error.

    python examples/notebooks/run.py [executed.ipynb]
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

here = Path(__file__).resolve().parent
nb = nbformat.read(here / "joint_credit_model.ipynb", as_version=4)
NotebookClient(nb, timeout=600, kernel_name="python3",
               resources={"metadata": {"path": str(here)}}).execute()
if len(sys.argv) > 1:
    nbformat.write(nb, sys.argv[1])
images = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
assert images >= 1, "the ROC plot was not drawn"
print(f"notebook executed: {len(nb.cells)} cells, {images} plot(s)")
