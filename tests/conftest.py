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
