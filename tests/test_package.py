"""The package as a user gets it: `pip install .` into a clean venv gives an importable `mpvae` with a version,
and the library in the repository is what the notebooks export."""
import os, re, subprocess, sys, tomllib
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

def test_version_matches_init():
    import mpvae
    init = (ROOT/'mpvae'/'__init__.py').read_text()
    assert re.search(r'__version__ = "(\d+\.\d+\.\d+)"', init).group(1) == mpvae.__version__

def test_pyproject_settings():
    cfg = tomllib.loads((ROOT/'pyproject.toml').read_text())
    nb = cfg['tool']['nbdev']
    assert nb['allowed_cell_metadata_keys'] == ['tags'], "nbdev-clean would strip papermill's `parameters` tag"
    assert 'slow' in nb['tst_flags'].split()
    assert not (ROOT/'settings.ini').exists() and not (ROOT/'setup.py').exists()
    deps = ' '.join(cfg['project']['dependencies'])
    for d in ('fastai', 'torch', 'torchvision', 'scikit-learn', 'matplotlib', 'papermill', 'ipykernel', 'fastprogress'):
        assert d in deps, d

def test_every_module_has_a_notebook():
    "Each module of the library says which notebook it was exported from, and that notebook exists."
    for py in (ROOT/'mpvae').glob('*.py'):
        if py.name in ('__init__.py', '_modidx.py'): continue
        head = py.read_text().splitlines()[:6]
        m = [re.search(r'File to edit: \.\./(nbs/\S+\.ipynb)', l) for l in head]
        m = [x for x in m if x]
        assert m, f"{py.name} was not written by nbdev-export"
        assert (ROOT/m[0].group(1)).exists(), f"{py.name} says it comes from {m[0].group(1)}, which is missing"

def test_pip_install_into_clean_venv(tmp_path):
    "Build a wheel and install it (no deps) into a brand-new venv; import it from outside the repository."
    wheel_dir, venv = tmp_path/'wheel', tmp_path/'venv'
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(wheel_dir), str(ROOT)],
                   check=True, capture_output=True)
    wheels = list(wheel_dir.glob('mpvae-*.whl'))
    assert len(wheels) == 1, wheels
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    py = venv/'bin'/'python'
    # install by unpacking the wheel with the outer pip into the new venv's site-packages
    site = subprocess.run([str(py), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'], check=True, capture_output=True, text=True).stdout.strip()
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-deps', '-q', '--target', site, str(wheels[0])], check=True, capture_output=True)
    out = subprocess.run([str(py), '-c', 'import mpvae, sys; print(mpvae.__version__); print(mpvae.__file__)'],
                         cwd=tmp_path, check=True, capture_output=True, text=True).stdout.split()
    import mpvae
    assert out[0] == mpvae.__version__
    assert out[1].startswith(str(venv)), out[1]
    names = subprocess.run([sys.executable, '-m', 'zipfile', '-l', str(wheels[0])], check=True, capture_output=True, text=True).stdout
    assert 'mpvae/core.py' in names and 'mpvae/_modidx.py' in names
