"""Real CelebA faces, where a folder of them is at hand: found through the package's usual lookup (`$MPVAE_CELEBA`, else
`$MPVAE_DATA/celeba`); `.ci/run` points `$MPVAE_CELEBA` at the shared sample of 19,000 faces when it exists.

Every expectation is taken from the folder itself, independently of the loader: the row and partition counts and the
attribute frequencies are counted from the two text files with plain string splitting, and an image is decoded
again with PIL and torchvision's own CenterCrop + Resize. The folder is read where it is; the decoded cache goes to a
temporary `$MPVAE_DATA` (the shared folder is read-only), so the first load decodes and the second must not.
"""
from collections import Counter
import numpy as np
import pytest
import torch
from PIL import Image

import mpvae.celeba as C
from mpvae.celeba import load_celeba, celeba_root, attribute_balance

def _root():
    try: return celeba_root()
    except (FileNotFoundError, NotADirectoryError) as e: return e

ROOT = _root()
pytestmark = pytest.mark.skipif(isinstance(ROOT, Exception), reason=f"no real CelebA folder: {ROOT} (set $MPVAE_CELEBA "
                                "to a folder in the official layout to run these tests)")

@pytest.fixture(scope='module')
def text():
    "The two official files, parsed by hand: file names, -1/1 attributes, partition codes."
    lines = (ROOT/'list_attr_celeba.txt').read_text().splitlines()
    n, names = int(lines[0]), lines[1].split()
    rows = [l.split() for l in lines[2:] if l.strip()]
    part = dict(l.split() for l in (ROOT/'list_eval_partition.txt').read_text().splitlines() if l.strip())
    return dict(n=n, names=names, files=[r[0] for r in rows], attrs=np.array([[int(v) for v in r[1:]] for r in rows]),
                part=part)

@pytest.fixture(scope='module')
def cached(tmp_path_factory):
    "The folder loaded twice with a fresh cache folder: (first load, second load, the decoder's call count)."
    mp = pytest.MonkeyPatch()
    mp.setenv('MPVAE_DATA', str(tmp_path_factory.mktemp('mpvae_data')))
    calls, real = [], C.decode_celeba_images
    mp.setattr(C, 'decode_celeba_images', lambda *a, **k: calls.append(1) or real(*a, **k))
    try:
        first = load_celeba(progress=False)
        n_first = len(calls)
        second = load_celeba(progress=False)
    finally: mp.undo()
    return first, second, n_first, len(calls)

def test_rows_and_partition(text, cached):
    ds = cached[0]
    assert text['n'] == len(text['files']) == len(ds) == len(ds.filenames)
    assert list(ds.filenames) == text['files']
    counts = Counter(text['part'][f] for f in text['files'])
    for code, name in (('0', 'train'), ('1', 'valid'), ('2', 'test')):
        assert len(ds.split_idx(name)) == counts[code], name
        assert all(text['part'][ds.filenames[i]] == code for i in ds.split_idx(name)[:50])
    if text['n'] == 19_000:   # the shared sample: its README's counts
        assert (counts['0'], counts['1'], counts['2']) == (15_979, 2_044, 977)

def test_attribute_frequencies(text, cached):
    ds = cached[0]
    assert list(ds.attr_names) == text['names'] and len(text['names']) == 40
    assert set(np.unique(text['attrs'])) <= {-1, 1}
    rate = (text['attrs'] == 1).mean(0)
    np.testing.assert_array_equal(np.asarray(attribute_balance(ds)), rate)
    np.testing.assert_array_equal(np.asarray(ds.attrs), (text['attrs'] == 1).astype(np.int64))
    majority = np.maximum(rate, 1 - rate).mean()
    if text['n'] == 19_000: assert round(100*majority, 1) == 80.5   # the README of the shared sample says 80.5%
    assert 0.5 < majority < 1

def test_images_shape_dtype_range(cached):
    ds = cached[0]
    imgs = ds.imgs
    assert tuple(imgs.shape) == (len(ds), 3, 64, 64) and imgs.dtype == torch.uint8
    assert int(imgs.min()) == 0 and int(imgs.max()) == 255      # real photos reach both ends
    x = ds.images([0, len(ds) - 1])
    assert x.dtype == torch.float32 and 0 <= float(x.min()) and float(x.max()) <= 1

def test_images_match_torchvision(cached):
    tv = pytest.importorskip('torchvision.transforms')
    ds = cached[0]
    for k in (0, 1234, len(ds) - 1):
        with Image.open(ROOT/'img_align_celeba'/ds.filenames[k]) as im:
            assert im.size == (178, 218)
            ref = np.asarray(tv.Compose([tv.CenterCrop(148), tv.Resize(64)])(im.convert('RGB'))).transpose(2, 0, 1)
        assert np.array_equal(ds.imgs[k].numpy(), ref), k

def test_second_load_from_cache(cached):
    first, second, n_first, n_total = cached
    assert n_first == 1 and n_total == 1          # decoded once, then served from the cache
    assert torch.equal(first.imgs, second.imgs)
    assert first.cache_path == second.cache_path and first.cache_path.exists()
    if not ROOT.stat().st_mode & 0o200:            # a read-only dataset folder (the shared sample) is left untouched
        assert ROOT not in first.cache_path.parents and not (ROOT/'.mpvae_cache').exists()


def test_shipped_models_reconstruct_heldout_faces(text, cached):
    "The shipped CelebA models (Table 1's pair) were trained: on heldout faces they reconstruct far better than an untrained one."
    from mpvae.pretrained import load_pretrained, pretrained_seeds
    from mpvae.model import MPVAE
    from mpvae.loss import recon_nll
    ds = cached[1]
    held = [k for k, f in enumerate(text['files']) if text['part'][f] != '0'][:64]   # valid/test rows, counted by hand
    x = ds.images(np.array(held))
    nll = lambda m: float(recon_nll(m.decode(m.encode(x)), x).mean())
    with torch.no_grad():
        untrained = nll(MPVAE(latent_dims=(8, 24), in_channels=3).eval())
        for kind, dims in (('baseline', (32,)), ('mpvae', (8, 24))):
            seeds = pretrained_seeds(kind, data='celeba')['']
            assert seeds == [0, 1, 2]
            for s in seeds:
                m = load_pretrained(f'celeba_{kind}', s)
                assert m.latent_dims == dims and m.meta['record']['spec']['data'] == 'celeba'
                assert nll(m) < untrained - 1500, (kind, s, nll(m), untrained)


def test_paper_preset_probe_sizes_fit_this_folder(text):
    "The paper preset asks for 10,000 + 5,000 probe rows; the heldout pool of this folder holds fewer, so they are scaled, said."
    from mpvae.params import PRESETS
    from mpvae.stages import probe_sizes
    p = PRESETS['paper']['celeba']
    held = sum(v != '0' for v in text['part'].values())            # valid + test partitions, counted by hand
    n, tr, va, note = probe_sizes(held, p['probe_pool'], p['probe_train'], p['probe_valid'])
    assert n == held and tr + va == held and abs(tr/va - 2) < 0.01 and 'scaled' in note


def test_pretrained_celeba_preset_on_real_faces(tmp_path, text):
    "`mpvae-tables --preset pretrained_celeba` (small probes) on the real folder: Table 1's rows, balanced accuracy, the models' records."
    import json, os, subprocess, sys
    from pathlib import Path
    cli = Path(sys.executable).parent/'mpvae-tables'
    r = subprocess.run([str(cli), '--preset', 'pretrained_celeba', '--tables', 'celeba', '--out', str(tmp_path), '-p', f'data_root={ROOT}',
                        '-p', 'rep_seeds=[0]', '-p', 'n_splits=1', '-p', 'probe_pool=600', '-p', 'figures=false'],
                       capture_output=True, text=True, timeout=900, env={**os.environ, 'OMP_NUM_THREADS': '1'}, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((tmp_path/'celeba'/'results.json').read_text())
    assert list(res['rows']) == ['baseline', 'z1', 'z2', 'z1+z2'] and len(res['labels']) == 40 == len(text['names'])
    assert (res['probe']['pool'], res['probe']['train_size'], res['probe']['valid_size']) == (600, 360, 240)
    maj = 100*np.mean(list(res['majority'].values()))
    for k, row in res['rows'].items():   # every representation at least matches the majority answer, and knows the rare class
        assert row['mean']['mean'] > maj - 1 and row['balanced_mean']['mean'] > 51, (k, row['mean'], row['balanced_mean'])
    assert max(row['balanced_mean']['mean'] for row in res['rows'].values()) > 55
    assert res['images_seen']['0']['mpvae'] == res['pretrained_records']['0']['mpvae']['images'] >= 500_000
