"""One pytest test per notebook, executed by nbdev's own test machinery (`nbdev.test.test_nb`, what `nbdev-test` runs).

Cells flagged with any of `tool.nbdev.tst_flags` (`notest`, `slow`) are skipped, as with `nbdev-test`.
A failing notebook fails the test named after it, with the cell's traceback in the message.
"""
import io, sys
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

ROOT = Path(__file__).resolve().parents[1]
CFG = get_config(ROOT)
# the table notebooks (one per registered dataset) run end to end through papermill, with the smoke preset, in
# tests/test_tables.py and tests/test_tables_folder.py
from mpvae.datasets import DATASETS
TABLE_NBS = {s.notebook for s in DATASETS.values()}
NBS = sorted(p for p in Path(CFG.nbs_path).glob('*.ipynb') if not p.name.startswith(('_', '.')) and p.name not in TABLE_NBS)

def test_notebooks_found():
    assert any(p.name == 'index.ipynb' for p in NBS) and len(NBS) >= 2, f"no notebooks found in {CFG.nbs_path}"

@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_notebook(nb):
    flags = CFG.tst_flags.split() if isinstance(CFG.tst_flags, str) else list(CFG.tst_flags)
    buf, old = io.StringIO(), sys.__stderr__
    sys.__stderr__ = buf   # test_nb writes the failing cell's traceback there
    try: ok, secs = run_notebook(nb, skip_flags=flags, basepath=ROOT, showerr=True)
    finally: sys.__stderr__ = old
    assert ok, f"notebook {nb.name} failed:\n{buf.getvalue()[-6000:]}"
