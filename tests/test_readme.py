"""README.md's Python blocks run as written, imports included, as a reader would paste them: each in a fresh interpreter,
in an empty folder prepared as the block expects (the own-images block reads `my_images/`, a folder of class
sub-folders, made here from `make_shapes_folder`'s coloured shapes sorted by shape)."""
import os, re, shutil, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r'```python\n(.*?)```', (ROOT/'README.md').read_text(), re.S)

def test_blocks_found():
    assert len(BLOCKS) >= 2 and any("load_folder('my_images'" in b for b in BLOCKS)

def _class_folders(root:Path, n:int=200) -> Path:
    "`root/my_images/<shape>/<file>.png`: shapes of three kinds, in one sub-folder per kind."
    from mpvae.folder import make_shapes_folder
    flat = make_shapes_folder(root/'flat', n=n, seed=0)
    for row in (flat/'labels.csv').read_text().splitlines()[1:]:
        f, shape = row.split(',')[:2]
        (root/'my_images'/shape).mkdir(parents=True, exist_ok=True)
        shutil.move(flat/f, root/'my_images'/shape/f)
    shutil.rmtree(flat)
    return root/'my_images'

@pytest.mark.parametrize('i', range(len(BLOCKS)))
def test_readme_block_runs(i, tmp_path):
    code, own = BLOCKS[i], "load_folder('my_images'" in BLOCKS[i]
    if own: _class_folders(tmp_path)
    env = {**os.environ, 'MPVAE_DATA': str(tmp_path/'cache'), 'MPVAE_PRECISION': 'fp32', 'OMP_NUM_THREADS': '1'}
    r = subprocess.run([sys.executable, '-c', code + ('\nprint(res.summary().to_string())' if own else '')],
                       cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, f"README block {i} failed:\n{code}\n{r.stderr[-3000:]}"
    if own:
        assert {p.name for p in (tmp_path/'my_model').iterdir()} >= {'model.safetensors', 'config.json', 'meta.json'}
        assert 'z1+z2' in r.stdout and 'class' in r.stdout, r.stdout
        assert not list((tmp_path/'my_images').rglob('*.npy'))       # nothing written into the user's folder
