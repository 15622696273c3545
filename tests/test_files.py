"""Damaged and foreign files given to the loaders: `load_model`, `load_checkpoint_model`, a resumed fit and
`mpvae-train --resume`. Each fails with an error naming the file, what it should be, and what it is instead
(empty, truncated, another kind of file); a checkpoint of another model configuration names the fields that differ.

The damaged files are made the way they happen: a good file cut off part-way (an interrupted copy or a full disk),
a zero-byte file (a crash right after `open`), and files of other programs (text, a NumPy array, a plain pickle,
a torch file holding something else)."""
import os, pickle, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import torch
from mpvae.loader import array_dls
from mpvae.model import MPVAE, save_model, load_model
from mpvae.train import mpvae_learner, load_checkpoint_model, Checkpoint

SMALL = dict(img_size=32, latent_dims=(2, 3), taps=(3, 4), trunk_channels=(8, 8, 16), extra_channels=16, merge_channels=(16, 16))
X = (torch.rand(96, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.7).to(torch.uint8)

def dls(): return array_dls(X, decode=lambda r: r.float(), valid_pct=0.25, bs=16, seed=0, device='cpu')

def fit(path, cfg=SMALL, resume=False, epochs=2):
    learn = mpvae_learner(dls(), cfg, seed=0, checkpoint=Checkpoint('ckpt.pth', resume=resume), path=path)
    with learn.no_bar(), learn.no_logging(): learn.fit(epochs, 1e-3)
    return learn

def damaged(good:Path, d:Path) -> dict:
    "name -> (file, words its error must contain): the damaged and foreign versions of `good`."
    raw = good.read_bytes()
    files = {'truncated': (raw[:len(raw)//2], 'truncated'), 'cut_short': (raw[:200], 'truncated'), 'empty': (b'', 'empty (0 bytes)'),
             'text': (b'model weights: see the shared drive\n', 'a text file')}
    out = {k: (d/f'{k}.pth', says) for k, (b, says) in files.items()}
    for k, (b, _) in files.items(): out[k][0].write_bytes(b)
    np.save(d/'array.npy', np.zeros(3)); out['numpy'] = (d/'array.npy', 'NumPy')
    with open(d/'pickled.pth', 'wb') as f: pickle.dump({'w': [1, 2]}, f)
    out['pickle'] = (d/'pickled.pth', 'pickle')
    return out

@pytest.fixture(scope='module')
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp('files')
    torch.manual_seed(0)
    model = save_model(MPVAE(**SMALL), d/'model.pth')
    learn = fit(d)
    return dict(d=d, model=model, ckpt=d/'ckpt.pth', learn=learn)

def test_load_model_damaged(files):
    assert load_model(files['model']).config.latent_dims == (2, 3)          # the good file loads
    (files['d']/'m').mkdir()
    for name, (f, says) in damaged(files['model'], files['d']/'m').items():
        with pytest.raises(ValueError) as e: load_model(f)
        msg = str(e.value)
        assert str(f) in msg and 'mpvae.model.save_model' in msg and says in msg, (name, msg)
        assert '\n' not in msg

def test_load_model_foreign_torch_files(files, tmp_path):
    torch.save({'weights': torch.zeros(3)}, tmp_path/'other.pth')
    with pytest.raises(ValueError, match=r"other\.pth is not a model written by mpvae\.model\.save_model: it holds a dict with keys \['weights'\]"):
        load_model(tmp_path/'other.pth')
    with pytest.raises(ValueError, match=r'ckpt\.pth .*training checkpoint; load it with mpvae\.train\.load_checkpoint_model'):
        load_model(files['ckpt'])
    with pytest.raises(FileNotFoundError, match='no saved model'): load_model(tmp_path/'missing.pth')

def test_load_checkpoint_model_damaged(files):
    m = load_checkpoint_model(files['ckpt'])
    for a, b in zip(m.state_dict().values(), files['learn'].model.state_dict().values()): assert torch.equal(a, b)
    (files['d']/'c').mkdir()
    for name, (f, says) in damaged(files['ckpt'], files['d']/'c').items():
        with pytest.raises(ValueError) as e: load_checkpoint_model(f)
        msg = str(e.value)
        assert str(f) in msg and 'mpvae training checkpoint' in msg and says in msg, (name, msg)
    with pytest.raises(ValueError, match='is a saved model .*load it with mpvae.model.load_model'): load_checkpoint_model(files['model'])

def test_resume_from_damaged_checkpoint(tmp_path):
    fit(tmp_path, epochs=1)
    ck = tmp_path/'ckpt.pth'
    ck.write_bytes(ck.read_bytes()[:-100])           # the end of the archive is gone
    with pytest.raises(ValueError) as e: fit(tmp_path, resume=True)
    msg = str(e.value)
    assert str(ck) in msg and 'truncated' in msg and 'resume=False' in msg, msg
    ck.write_bytes(b'')
    with pytest.raises(ValueError, match='is empty'): fit(tmp_path, resume=True)

def test_resume_with_another_config_names_the_fields(tmp_path):
    fit(tmp_path, epochs=1)
    with pytest.raises(ValueError) as e: fit(tmp_path, cfg={**SMALL, 'latent_dims': (2, 4), 'merge_channels': (16, 8)}, resume=True, epochs=1)
    msg = str(e.value)
    assert 'latent_dims (checkpoint [2, 3], learner [2, 4])' in msg and 'merge_channels (checkpoint [16, 16], learner [16, 8])' in msg, msg
    assert 'trunk_channels' not in msg and 'img_size' not in msg      # only the fields that differ

def test_mpvae_train_resume_from_damaged_checkpoint(tmp_path):
    "The console script: exit 2 and one line naming the checkpoint, before any training."
    out = tmp_path/'run'; out.mkdir()
    (out/'checkpoint.pth').write_text('not a checkpoint')
    r = subprocess.run([str(Path(sys.executable).parent/'mpvae-train'), '--train-images', '256', '--valid-images', '64', '--bs', '32',
                        '--out', str(out), '--resume'], capture_output=True, text=True, timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and str(out/'checkpoint.pth') in lines[0] and 'a text file' in lines[0] and 'resume=False' in lines[0], r.stderr
    assert not (out/'model').exists() and not (out/'model.pth').exists()


def _calls(text:str, name:str='torch.' 'load('):   # spelt in two parts, so this line is not a call
    "The source of every call to `name` in `text`, up to its matching parenthesis."
    i = text.find(name)
    while i >= 0:
        depth, j = 0, i + len(name) - 1
        for j in range(i + len(name) - 1, len(text)):
            depth += {'(': 1, ')': -1}.get(text[j], 0)
            if depth == 0: break
        yield text[i:j + 1]
        i = text.find(name, j)

def test_every_torch_load_is_restricted(root):
    "Files people pass around must not run code when loaded: every torch.load in the repository uses weights_only=True."
    files = [p for d in ('mpvae', 'tools', 'tests', 'benchmarks') for p in (root/d).glob('*.py')] + list((root/'nbs').glob('*.ipynb'))
    assert len(files) > 40
    calls = {(p.name, c) for p in files for c in _calls(p.read_text().replace('\\"', '"').replace('\\n', '\n'))}
    assert len(calls) > 5, calls
    bad = [(f, c) for f, c in calls if 'weights_only=True' not in c]
    assert not bad, f"torch.load without weights_only=True: {bad}"


def test_runs_in_the_tree_stay_under_30_mb():
    "The committed long-run files (states of runs that continue, shipped snapshots, evaluations) total at most 30 MB."
    import subprocess
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run(['git', 'ls-files', '-z', 'runs'], cwd=root, capture_output=True)
    if r.returncode != 0: pytest.skip('not a git checkout')
    files = [root/f for f in r.stdout.decode().split('\0') if f]
    total = sum(f.stat().st_size for f in files if f.exists())
    assert total <= 30e6, f"runs/ holds {total/1e6:.1f} MB in the tree; remove finished runs' states (their snapshots ship)"
