"""Shared pytest set-up.

Under pytest-xdist each worker gets one torch thread (2 workers x 1 thread on a 2-core machine, instead of
2 x 2 fighting over the cores). Set MPVAE_TEST_THREADS to override.
"""
import os
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def pytest_configure(config):
    n = os.environ.get('MPVAE_TEST_THREADS') or ('1' if os.environ.get('PYTEST_XDIST_WORKER') else None)
    if n:
        import torch
        torch.set_num_threads(int(n))
    os.environ.setdefault('MPLBACKEND', 'Agg')
    # precision='auto' measures every (model, batch size) once per machine (~8 s each): the tests fix float32 instead;
    # auto itself is tested in nbs/04a_speed.ipynb, where auto_precision is called directly
    os.environ.setdefault('MPVAE_PRECISION', 'fp32')

@pytest.fixture
def root(): return ROOT

# The longest tests (and the xdist groups that hold them), longest first: pytest-xdist hands out work in collection
# order, so starting these first keeps either worker from being left with a three-minute test at the end. Seconds on an
# idle 2-core machine (BENCHMARKS.md, "make test"); a test missing from the list just runs in its usual place.
LONGEST_FIRST = [
    'test_pretrained.py::test_pretrained_preset_reproduces_report',     # ~210 s (slow: make test-slow)
    'test_package.py',                                                   # the wheel group: ~200 s
    'test_tables.py',                                                    # the tables group: ~200 s in all
    'test_tables_folder.py',                                             # ~120 s
    'test_pretrained.py::test_pretrained_metrics_reproduce_report',     # ~115 s (slow)
    'test_notebooks.py::test_notebook[15_curves.ipynb]',                # ~80 s
    'test_pretrained.py::test_three_paths_preset_rows_and_baselines',   # ~50 s
    'test_long_run.py::test_extended_run_is_the_uninterrupted_run',     # ~50 s
    'test_notebooks.py::test_notebook[18_scarce.ipynb]',                # ~37 s
    'test_long_run.py::test_warmup_counts_images_over_the_whole_run',   # ~36 s
]

def pytest_collection_modifyitems(config, items):
    "Skip `slow` tests unless MPVAE_SLOW=1; put `LONGEST_FIRST` at the front, in its order (the rest keep theirs)."
    if os.environ.get('MPVAE_SLOW') != '1':
        skip = pytest.mark.skip(reason="slow: make test-slow (or MPVAE_SLOW=1) runs it")
        for item in items:
            if 'slow' in item.keywords: item.add_marker(skip)
    def rank(item):
        nid = item.nodeid.split('tests/', 1)[-1]
        return next((i for i, p in enumerate(LONGEST_FIRST) if nid == p or nid.startswith(p + '::') or
                     (p.endswith('.py') and nid.startswith(p))), len(LONGEST_FIRST))
    items.sort(key=rank)
