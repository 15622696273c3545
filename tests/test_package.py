"""The package as a user gets it: `pip install .` into a clean venv gives an importable `mpvae` with a version,
the wheel carries the table notebooks so that `mpvae-tables` runs without a clone, and the library in the repository
is what the notebooks export."""
import json, os, re, subprocess, sys, sysconfig, tomllib, zipfile
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

@pytest.mark.xdist_group('suite')
def test_xdist_groups_hold(request):
    "Under `pytest -n 2 --dist loadgroup` (make test) a test's xdist_group reaches pytest-xdist, which keeps a group on one worker."
    if not (os.environ.get('PYTEST_XDIST_WORKER') and request.config.getvalue('loadgroup')):
        pytest.skip('not under pytest-xdist with --dist loadgroup')
    assert request.node.nodeid.endswith('@suite'), (
        f"{request.node.nodeid}: this pytest ignores xdist_group (pytest 9.2 with pytest-xdist 3.8 does): the wheel, docs "
        "and tables groups would build side by side; keep pyproject's pin on pytest")

def test_every_module_has_a_notebook():
    "Each module of the library says which notebook it was exported from, and that notebook exists."
    for py in (ROOT/'mpvae').glob('*.py'):
        if py.name in ('__init__.py', '_modidx.py'): continue
        head = py.read_text().splitlines()[:6]
        m = [re.search(r'File to edit: \.\./(nbs/\S+\.ipynb)', l) for l in head]
        m = [x for x in m if x]
        assert m, f"{py.name} was not written by nbdev-export"
        assert (ROOT/m[0].group(1)).exists(), f"{py.name} says it comes from {m[0].group(1)}, which is missing"

@pytest.fixture(scope='session')
def wheel(tmp_path_factory) -> Path:
    "The wheel `pip wheel .` builds from this checkout, built once for the tests of the 'wheel' group."
    wheel_dir = tmp_path_factory.mktemp('wheel')
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(wheel_dir), str(ROOT)],
                   check=True, capture_output=True)
    wheels = list(wheel_dir.glob('mpvae-*.whl'))
    assert len(wheels) == 1, wheels
    return wheels[0]

@pytest.mark.xdist_group('wheel')   # the wheel is built once, on one worker (it writes the repository's build/ folder)
def test_pip_install_into_clean_venv(tmp_path, wheel):
    "Build a wheel and install it (no deps) into a brand-new venv; import it from outside the repository."
    venv, wheels = tmp_path/'venv', [wheel]
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
    assert 'mpvae/pretrained/celeba_mpvae_seed0/model.safetensors' in names   # both tables' shipped models travel
    assert wheels[0].stat().st_size < 60e6, f"the wheel is {wheels[0].stat().st_size/1e6:.1f} MB: keep it under 60 MB"

TABLE_NBS = ['10_table_dsprites.ipynb', '11_table_celeba.ipynb', '13_table_folder.ipynb']   # one per registered dataset

@pytest.mark.xdist_group('wheel')
def test_wheel_runs_the_tables(tmp_path, wheel):
    """A pip user's route, no clone: the wheel holds the table notebooks; installed into a fresh venv outside the
    repository, its `mpvae-tables --preset smoke --tables dsprites celeba` runs both tables from the installed copy.
    This is also the suite's one smoke run of both tables: `check_smoke_run` (tests/test_tables.py) checks it in full.

    The venv gets only the wheel (no dependencies): torch, fastai, papermill and the rest are those of the test's own
    environment, reached through a path in a .pth file placed *after* the venv's site-packages. Such a path does not run
    the .pth files inside it, so the editable install of this clone stays out, and `mpvae` is the wheel's (checked)."""
    names = zipfile.ZipFile(wheel).namelist()
    for nb in TABLE_NBS: assert f'mpvae/nbs/{nb}' in names, names
    assert json.loads(zipfile.ZipFile(wheel).read('mpvae/nbs/10_table_dsprites.ipynb')) == json.loads((ROOT/'nbs'/TABLE_NBS[0]).read_text())

    venv = tmp_path/'venv'
    subprocess.run([sys.executable, '-m', 'venv', '--without-pip', str(venv)], check=True)
    py = venv/'bin'/'python'
    site = Path(subprocess.run([str(py), '-c', 'import sysconfig; print(sysconfig.get_paths()["purelib"])'],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site/'_test_deps.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    subprocess.run([sys.executable, '-m', 'pip', '--python', str(py), 'install', '--no-deps', '-q', str(wheel)], check=True, capture_output=True)
    cli = venv/'bin'/'mpvae-tables'
    assert cli.read_text().splitlines()[0] == f'#!{py}'

    work = tmp_path/'work'; work.mkdir()         # outside the repository, no nbs/ here
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'MPVAE_NBS', 'VIRTUAL_ENV', 'JUPYTER_PATH')}
    env.update(OMP_NUM_THREADS=os.environ.get('MPVAE_TEST_THREADS', '1'), PATH=f"{venv/'bin'}{os.pathsep}{env.get('PATH', '')}")
    # the shipped weights are in the wheel and its `mpvae-pretrained` lists them (name, seed, images, ... one line each)
    r = subprocess.run([str(venv/'bin'/'mpvae-pretrained')], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:3] == ['name', 'seed', 'images'] and len(lines) > 1, r.stdout
    assert {l.split()[0] for l in lines[1:]} >= {'dsprites_baseline_lr1e-4', 'dsprites_mpvae_lr1e-4'}, r.stdout
    probe = subprocess.run([str(py), '-c', 'import mpvae, mpvae.params as t; print(mpvae.__file__); print(t.find_notebooks())'],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert probe == [str(site/'mpvae'/'__init__.py'), str(site/'mpvae'/'nbs')], probe      # the wheel's mpvae and its notebooks
    specs = subprocess.run([str(py), '-c', 'from jupyter_client.kernelspec import KernelSpecManager as K; print(*K().find_kernel_specs())'],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout.split()
    assert 'mpvae' not in specs, specs       # the clone's kernel is out of sight: the notebooks run on this venv's python

    from mpvae.celeba import make_celeba_folder
    celeba = make_celeba_folder(tmp_path/'celeba', n=120, seed=1)
    r = subprocess.run([str(cli), '--preset', 'smoke', '--tables', 'dsprites', 'celeba', '--out', 'results',
                        '-p', f'data_root={json.dumps(str(celeba))}'], cwd=work, env=env, capture_output=True, text=True, timeout=3000)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert f"table notebooks from {site/'mpvae'/'nbs'}" in r.stdout
    out = work/'results'
    from test_tables import check_smoke_run          # the smoke run's artefacts and progress lines, checked in full
    check_smoke_run(out, r.stdout, work)
    for t, nb in (('dsprites', TABLE_NBS[0]), ('celeba', TABLE_NBS[1])):
        assert (out/t/nb).exists() and json.loads((out/t/'job.json').read_text())['ok'] is True
    summary = (out/'summary.md').read_text()
    assert '| dsprites | ok |' in summary and '| celeba | ok |' in summary
    # the progress lines come from the installed package too, as they happen (before the cell that trains ends),
    # with --out relative to the cwd, which papermill changes while the notebook runs
    lines = r.stdout.splitlines()
    first = [i for i, l in enumerate(lines) if '[dsprites] baseline_seed0 seed 0 | epoch 1/2 | 512/1,024 images' in l]
    done = [i for i, l in enumerate(lines) if re.search(r'\[dsprites\] cell \d+/\d+: training, encoding, probes done in', l)]
    assert first and done and first[0] < done[0], r.stdout[-3000:]
    # the learning curves from the wheel: a tiny pair of runs with two snapshots each, evaluated and reported by mpvae-curves
    runs = work/'runs'
    for m, dims in (('baseline', ['12']), ('mpvae', ['3', '9'])):
        r = subprocess.run([str(venv/'bin'/'mpvae-train'), '--out', str(runs/f'{m}_seed0'), '--latent-dims', *dims, '--betas', '4',
                            '--stop-images', '640', '--chunk-images', '320', '--precision', 'fp32', '--valid-images', '256', '--threads', '1'],
                           cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    assert sorted(p.name for p in (runs/'mpvae_seed0').glob('snap_*.pth')) == ['snap_320.pth', 'snap_640.pth']
    r = subprocess.run([str(venv/'bin'/'mpvae-curves'), 'report', '--runs', 'runs', '--evaluate', '--pool', '600', '--train-size', '300',
                        '--valid-size', '200', '--splits', '2', '--out', 'rep', '--work', 'work'], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert (work/'work'/'curves'/'16_curves_report.ipynb').exists()           # the wheel's notebook, executed
    md = (work/'rep'/'dsprites_learning_curves_cv.md').read_text()
    assert '| lr 1e-3 | 0 | 320 | 5 |' in md and '| lr 1e-3 | 0 | 640 | 10 |' in md   # one row per snapshot pair (steps at bs 64)
    assert sorted(p.name for p in (runs/'eval_cv').iterdir()) == ['seed0_320.json', 'seed0_640.json']
