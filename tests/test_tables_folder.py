"""The folder table (nbs/13_table_folder.ipynb) on real faces, as a user runs it: `mpvae-tables --tables folder`.

The faces are the shared CelebA sample, found as tests/test_celeba_real.py finds it (`$MPVAE_CELEBA`, else
`$MPVAE_DATA/celeba`; skipped, saying why, where there is none). Nothing is copied into the repository: in a temporary
folder the test links 300 faces into (a) one sub-folder per class of one attribute (Smiling/, Not_Smiling/) and (b) one
flat folder with a labels CSV of three attributes. Every expectation comes from the official text files, parsed here
by hand: the labels, the majority-class accuracy of each heldout probe split, the split sizes. The smoke preset's
numbers mean nothing; what is checked is that they are computed on the right images, with the right labels, and that
bad inputs stop the run before any training, in one line naming the fix.
"""
import csv, json, math, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest

from mpvae.celeba import celeba_root

CLI = Path(sys.executable).parent/'mpvae-tables'
# as tests/test_tables.py: one torch thread per kernel (the other xdist worker keeps a core busy)
ENV = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('MPVAE_TEST_THREADS', '1')}
N, HELDOUT = 300, 0.3            # faces per folder; the notebook's default heldout_pct
ATTRS = ['Smiling', 'Male', 'Eyeglasses']

def _root():
    try: return celeba_root()
    except (FileNotFoundError, NotADirectoryError) as e: return e

ROOT = _root()
pytestmark = [pytest.mark.skipif(isinstance(ROOT, Exception), reason=f"no real CelebA folder: {ROOT} (set "
                                 "$MPVAE_CELEBA to a folder in the official layout to run these tests)"),
              ]

@pytest.fixture(scope='module')
def faces():
    "The first N faces of list_attr_celeba.txt and their attributes as -1/1, parsed by hand."
    lines = (ROOT/'list_attr_celeba.txt').read_text().splitlines()
    names, rows = lines[1].split(), [l.split() for l in lines[2:2 + N]]
    return [r[0] for r in rows], {a: np.array([int(r[1 + names.index(a)]) for r in rows]) for a in ATTRS}

@pytest.fixture(scope='module')
def work(tmp_path_factory):
    "A temporary folder, and the environment of the runs: the decoded-image cache goes there too."
    d = tmp_path_factory.mktemp('folder_table')
    return d, {**ENV, 'MPVAE_DATA': str(d/'mpvae_data')}

def _link(src:Path, dst:Path):
    dst.parent.mkdir(parents=True, exist_ok=True); dst.symlink_to(src)

def _tables(cwd, env, out, *params):
    "`mpvae-tables --preset smoke --tables folder --out OUT -p ...`: the completed process."
    args = [str(CLI), '--preset', 'smoke', '--tables', 'folder', '--out', str(out)]
    for p in params: args += ['-p', p]
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=600, env=env)

@pytest.fixture(scope='module')
def by_class(faces, work):
    "(a) Smiling/ and Not_Smiling/: the label is the sub-folder. The smoke run, with its figures."
    d, env = work
    files, attrs = faces
    data = d/'by_class'
    cls = ['Smiling' if s == 1 else 'Not_Smiling' for s in attrs['Smiling']]
    for f, c in zip(files, cls): _link(ROOT/'img_align_celeba'/f, data/c/f)
    r = _tables(d, env, d/'out_class', f'data_root="{data}"')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    out = d/'out_class'/'folder'
    # the folder's class of each face, by its path: what the notebook should have read
    truth = {f'{c}/{f}': {'class': int(c == 'Smiling')} for f, c in zip(files, cls)}   # classes sorted: Not_Smiling 0
    return json.loads((out/'results.json').read_text()), out, truth

@pytest.fixture(scope='module')
def by_csv(faces, work):
    "(b) a flat folder and labels.csv of three attributes; 2 seeds (paired tests), the scarce-label probe, no figures."
    d, env = work
    files, attrs = faces
    data = d/'flat'
    for f in files: _link(ROOT/'img_align_celeba'/f, data/f)
    with open(data/'labels.csv', 'w', newline='') as fh:
        csv.writer(fh).writerows([['file', *ATTRS], *([f, *(attrs[a][i] for a in ATTRS)] for i, f in enumerate(files))])
    # data_root relative to where the command runs: each notebook runs in its job's folder, so mpvae-tables resolves it
    r = _tables(d, env, d/'out_csv', 'data_root=flat', 'labels="labels.csv"', 'scarce_sizes=[10,50]',
                'rep_seeds=[0,1]', 'train_images=256', 'figures=false')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    out = d/'out_csv'/'folder'
    assert Path(json.loads((out/'results.json').read_text())['params']['data_root']).resolve() == data.resolve()
    truth = {f: {a: int(attrs[a][i] == 1) for a in ATTRS} for i, f in enumerate(files)}   # -1 -> class 0, 1 -> 1
    return json.loads((out/'results.json').read_text()), out, truth

def _split(out:Path) -> dict:
    "split.csv: file -> 'train', 'pool' or 'heldout', in the folder's file order."
    with open(out/'split.csv', newline='') as fh: return {r['file']: r['split'] for r in csv.DictReader(fh)}

def check_split(res, out, truth):
    "The heldout pool: its size, disjoint from the training images, and the training loaders' sizes."
    from mpvae.model import load_model
    split = _split(out)
    assert sorted(split) == sorted(truth)                              # every face, once
    train = {f for f, s in split.items() if s == 'train'}
    held = {f for f, s in split.items() if s != 'train'}
    assert not train & held and len(held) == round(N*HELDOUT) == res['params']['n_heldout']
    assert res['params']['n_images'] == N and res['params']['n_train'] == len(train) == N - len(held)
    assert sum(s == 'pool' for s in split.values()) == res['params']['probe_pool'] == len(held)   # probe_pool None
    for name in ('baseline_seed0', 'mpvae_seed0'):                     # what the models trained and validated on
        tp = load_model(out/f'{name}.pth').meta['train_params']
        assert (tp['n_train'], tp['n_valid']) == (len(train), len(held)), (name, tp)

def check_majority(res, out, truth):
    "Each label's majority-class accuracy, recomputed from the attribute file over the probe's splits of the pool."
    from mpvae.probe import probe_splits
    pool = [f for f, s in _split(out).items() if s == 'pool']
    pr, p = res['probe'], res['params']
    n_tr = int(0.6*len(pool))                                          # probe_train None: 60% of the pool
    assert (pr['train_size'], pr['valid_size']) == (p['probe_train'], p['probe_valid']) == (n_tr, len(pool) - n_tr)
    splits = probe_splits(len(pool), pr['train_size'], pr['valid_size'], pr['n_splits'], pr['split_seed'])
    for l in res['labels']:
        y = np.array([truth[f][l] for f in pool])
        want = np.mean([np.mean(y[va] == np.bincount(y[tr], minlength=2).argmax()) for tr, va in splits])
        assert res['majority'][l] == pytest.approx(want, abs=1e-12), l

def check_rows(res, md):
    "Every row finite in [0, 100], in accuracy and balanced accuracy, per label and on the mean; the claim stated."
    assert set(res['rows']) == {'baseline', 'z1', 'z2', 'z1+z2'}
    for k, row in res['rows'].items():
        cells = [row['mean'], row['balanced_mean'], *row['acc'].values(), *row['balanced'].values()]
        assert len(cells) == 2 + 2*len(res['labels'])
        assert all(math.isfinite(c['mean']) and 0 <= c['mean'] <= 100 for c in cells), k
    assert res['ordering']['verdict'] in ('holds', 'within noise', 'reversed')
    assert "**Paper's claim (z1+z2 beats the baseline on the mean):**" in md and '| *majority class* |' in md
    assert md.startswith('| features |') and 'balanced' in md

def test_class_folders_table(by_class):
    res, out, truth = by_class
    assert res['table'] == 'folder' and res['preset'] == 'smoke' and res['labels'] == ['class']
    assert res['classes'] == {'class': ['Not_Smiling', 'Smiling']}
    assert res['params']['labels'] == 'class sub-folders' and res['params']['synthetic'] is False
    assert res['images_seen'] == {'0': {'baseline': 512, 'mpvae': 512}}    # the smoke preset's budget
    check_split(res, out, truth)
    check_majority(res, out, truth)
    check_rows(res, (out/'table.md').read_text())
    assert res['scarce'] is None
    for f in ('label_gains', 'recon_mpvae', 'traversals_mpvae', 'kl_mpvae'):
        assert (out/f'{f}.png').stat().st_size > 1000, f

def test_csv_labels_table(by_csv):
    res, out, truth = by_csv
    md = (out/'table.md').read_text()
    assert res['labels'] == ATTRS and res['classes'] == {a: ['-1', '1'] for a in ATTRS}
    assert res['params']['labels'].endswith('labels.csv') and res['params']['rep_seeds'] == [0, 1]
    check_split(res, out, truth)
    check_majority(res, out, truth)
    check_rows(res, md)
    for m in ('acc', 'balanced'):          # the paired tests over the two seeds, as Tables 1 and 2 show them
        assert len(res['rows']['z1+z2']['mean' if m == 'acc' else 'balanced_mean']['per_seed']) == 2
    assert md.count('| MPVAE (z1+z2) - VAE (z=32) | 0, 1 |') == 2 and '| VAE (z=32) - majority | 0, 1 |' in md
    sc = res['scarce']
    assert sc['sizes'] == [10, 50] and sc['seeds'] == [0, 1]
    for m in ('acc', 'balanced'):
        for l in ['mean', *ATTRS]:
            c = sc['curves'][m][l]
            assert c['sizes'] == [10, 50] and set(c['rows']) == {'baseline', 'z1', 'z2', 'z1+z2'}
            cells = [v for r in c['rows'].values() for v in r.values()]
            assert all(0 <= v['mean'] <= 100 and len(v['per_seed']) == 2 for v in cells), (m, l)
        assert set(sc['paired'][m]['mean']) == {'10', '50'}
    assert '| row | 10 labels | 50 labels |' in md and res['figures'] == []

def test_bad_inputs_stop_before_training(faces, work):
    "A labels CSV that is not there, a folder of one class: one line naming the fix, and nothing trained."
    d, env = work
    files, attrs = faces
    data = d/'one_class'
    for f in files[:40]: _link(ROOT/'img_align_celeba'/f, data/'Smiling'/f)
    r = _tables(d, env, d/'out_missing', f'data_root="{data}"', 'labels="nope.csv"')
    assert r.returncode == 2 and r.stderr.strip().count('\n') == 0, r.stderr
    assert "labels 'nope.csv' is not a file (relative to data_root" in r.stderr and not (d/'out_missing').exists()
    r = _tables(d, env, d/'out_one', f'data_root="{data}"')
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-3000:]
    line = [l for l in r.stderr.splitlines() if 'FAILED' in l]
    assert len(line) == 1, r.stderr
    assert "every image is in one folder, 'Smiling': a label needs two classes or more" in line[0], line[0]
    assert not list((d/'out_one').rglob('*.pth')) and not list((d/'out_one').rglob('*history.csv'))
