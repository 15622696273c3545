"""CelebA loading (mpvae.celeba) on small CelebA-layout folders the tests write themselves.

Expectations are independent of the loader: labels are re-read from the written text by hand, the crop geometry is
checked on painted images and against torchvision's own CenterCrop + Resize, and every bad input is built on purpose.
"""
import io, shutil, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image

import mpvae.celeba as C
from mpvae.celeba import (load_celeba, celeba_dls, make_celeba_folder, attribute_balance, center_crop_box,
                          celeba_preprocess, read_celeba_attrs, CELEBA_ATTRS)

N = 48

@pytest.fixture(scope='module')
def base(tmp_path_factory):
    return make_celeba_folder(tmp_path_factory.mktemp('celeba')/'base', n=N, seed=0)

@pytest.fixture
def root(base, tmp_path, monkeypatch):
    "A private copy of the fake folder that a test may break; its caches go to the test's own $MPVAE_DATA."
    monkeypatch.setenv('MPVAE_DATA', str(tmp_path/'data'))
    return Path(shutil.copytree(base, tmp_path/'celeba', ignore=shutil.ignore_patterns('.mpvae_cache')))

def cache_of(root): return C.default_cache_dir(root, 'celeba_cache')

def load(root, **kw):
    kw.setdefault('progress', False)
    return load_celeba(root, **kw)

def leftovers(d):
    "Files in a cache folder that a failed run should not have left."
    d = Path(d)
    return sorted(p.name for p in d.rglob('*')) if d.exists() else []

# ---------------------------------------------------------------- the fake folder and parsing

def test_folder_layout_and_labels(root):
    lines = (root/'list_attr_celeba.txt').read_text().splitlines()
    assert lines[0] == str(N) and lines[1].split() == CELEBA_ATTRS and len(CELEBA_ATTRS) == 40
    assert CELEBA_ATTRS[0] == '5_o_Clock_Shadow' and CELEBA_ATTRS[20] == 'Male' and CELEBA_ATTRS[-1] == 'Young'
    assert sorted(p.name for p in (root/'img_align_celeba').iterdir()) == [f'{i:06d}.jpg' for i in range(1, N + 1)]
    with Image.open(root/'img_align_celeba'/'000001.jpg') as im: assert im.format == 'JPEG' and im.size == (178, 218)
    ds = load(root)
    # independent re-reading of the written file: -1 -> 0, 1 -> 1
    written = {l.split()[0]: [int(v) for v in l.split()[1:]] for l in lines[2:]}
    assert set(v for r in written.values() for v in r) == {-1, 1}
    for f, row in zip(ds.filenames, ds.attrs): assert row.tolist() == [(v + 1) // 2 for v in written[f]]
    assert ds.attrs.dtype == np.int64 and ds.attrs.shape == (N, 40) and ds.attr_names == CELEBA_ATTRS
    assert ds.labels('Smiling').tolist() == [(written[f][31] + 1) // 2 for f in ds.filenames]

def test_partition_counts(root):
    part = dict(l.split() for l in (root/'list_eval_partition.txt').read_text().splitlines())
    ds = load(root)
    assert [part[f] for f in ds.filenames] == [str(p) for p in ds.partition]
    # the real proportions 162770 : 19867 : 19962 of 48 images, rounded: 38 / 5 / 5
    assert np.bincount(ds.partition).tolist() == [38, 5, 5]
    for s, k in (('train', 38), ('valid', 5), ('test', 5)):
        assert len(ds.split_idx(s)) == k and len(load(root, split=s)) == k
    assert len(ds.split_idx(['valid', 'test'])) == 10
    # every attribute takes both values in every split (so a classifier can be fitted and scored on each)
    for s in range(3):
        a = ds.attrs[ds.partition == s]
        assert (a.min(0) == 0).all() and (a.max(0) == 1).all()

def test_images_shape_dtype(root):
    ds = load(root)
    assert ds.imgs.shape == (N, 3, 64, 64) and ds.imgs.dtype == torch.uint8 and len(ds) == N
    x = ds.images([1, 7, 3])
    assert x.shape == (3, 3, 64, 64) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.equal(x[1], ds.imgs[7].float() / 255)
    assert ds.images(0).shape == (1, 3, 64, 64) and ds.images(slice(2, 5)).shape == (3, 3, 64, 64)
    assert ds.images(ds.partition == 1).shape == (5, 3, 64, 64)
    assert ds.imgs.float().std() > 20   # real pictures, not a constant
    small = load(root, size=32, crop=100)
    assert small.imgs.shape == (N, 3, 32, 32)

def test_make_folder_deterministic(tmp_path):
    a = make_celeba_folder(tmp_path/'a', n=12, seed=5); b = make_celeba_folder(tmp_path/'b', n=12, seed=5)
    c = make_celeba_folder(tmp_path/'c', n=12, seed=6)
    for f in ('list_attr_celeba.txt', 'list_eval_partition.txt', 'img_align_celeba/000003.jpg'):
        assert (a/f).read_bytes() == (b/f).read_bytes()
    assert (a/'img_align_celeba/000003.jpg').read_bytes() != (c/'img_align_celeba/000003.jpg').read_bytes()
    with pytest.raises(ValueError, match='at least 3'): make_celeba_folder(tmp_path/'d', n=2)

def test_attribute_balance(root):
    ds = load(root)
    b = attribute_balance(ds)
    assert list(b.index) == CELEBA_ATTRS
    counts = {a: 0 for a in CELEBA_ATTRS}
    for l in (root/'list_attr_celeba.txt').read_text().splitlines()[2:]:
        for a, v in zip(CELEBA_ATTRS, l.split()[1:]): counts[a] += v == '1'
    assert np.allclose(b.values, [counts[a] / N for a in CELEBA_ATTRS])
    tr = attribute_balance(ds, 'train')
    assert np.allclose(tr.values, ds.attrs[ds.partition == 0].mean(0))

# ---------------------------------------------------------------- crop geometry

def _put(root, name, arr, fmt='JPEG'):
    buf = io.BytesIO()
    kw = dict(quality=100, subsampling=0) if fmt == 'JPEG' else {}
    Image.fromarray(arr).save(buf, fmt, **kw)
    (root/'img_align_celeba'/name).write_bytes(buf.getvalue())

def test_center_crop_box_by_hand():
    assert center_crop_box(178, 218, 148) == (15, 35, 163, 183)
    assert center_crop_box(178, 218, 178) == (0, 20, 178, 198)
    assert center_crop_box(178, 218, None) == (0, 20, 178, 198)
    assert center_crop_box(200, 240, 148) == (26, 46, 174, 194)

def test_crop_quadrants_land_where_expected(root):
    "A 148-square painted in four coloured quadrants inside a red frame: after crop+resize, four quadrants, no red."
    a = np.zeros((218, 178, 3), np.uint8); a[:] = (255, 0, 0)
    cols = {(0, 0): (0, 255, 0), (0, 1): (0, 0, 255), (1, 0): (255, 255, 255), (1, 1): (0, 0, 0)}
    for (i, j), c in cols.items(): a[35 + 74*i: 35 + 74*(i+1), 15 + 74*j: 15 + 74*(j+1)] = c
    _put(root, '000001.jpg', a)                       # a real JPEG (artefacts at edges: tolerance)
    _put(root, '000002.jpg', a, 'PNG')                # lossless content under a .jpg name: exact values
    ds = load(root)
    for k, tol in ((0, 12), (1, 0)):
        out = ds.imgs[k].permute(1, 2, 0).int().numpy()
        for (i, j), c in cols.items():
            q = out[32*i + 3: 32*(i+1) - 3, 32*j + 3: 32*(j+1) - 3]   # quadrant interior, 3 px from the seams
            assert np.abs(q - np.array(c)).max() <= tol, (k, i, j)
    # lossless: the bilinear resize reads only pixels inside the crop (crop first, resize second), so the border
    # never leaks in: the outermost output rows/columns keep the quadrant colours exactly
    out = ds.imgs[1].permute(1, 2, 0).numpy()
    assert (out[0, :30] == (0, 255, 0)).all() and (out[-1, -30:] == (0, 0, 0)).all()
    assert (out[:30, -1] == (0, 0, 255)).all() and (out[-30:, 0] == (255, 255, 255)).all()

def test_offset_square_shows_border_on_expected_side(root):
    "Shift the painted square 20 px right: the left 20/148 of the output shows the frame, the rest the square."
    a = np.zeros((218, 178, 3), np.uint8); a[35:183, 35:178] = 255
    _put(root, '000003.jpg', a, 'PNG')
    out = load(root).imgs[2, 0].numpy()              # red channel is enough (image is grey)
    edge = 20 * 64 / 148                             # 8.65 output columns
    assert (out[:, :int(edge) - 1] == 0).all() and (out[:, int(edge) + 2:] == 255).all()

def test_matches_torchvision(root):
    tv = pytest.importorskip('torchvision.transforms')
    ds = load(root, max_items=6)
    for k in range(6):
        with Image.open(root/'img_align_celeba'/ds.filenames[k]) as im:
            ref = np.asarray(tv.Compose([tv.CenterCrop(148), tv.Resize(64)])(im.convert('RGB'))).transpose(2, 0, 1)
        assert np.array_equal(ds.imgs[k].numpy(), ref), k
    im = Image.new('RGB', (178, 218))
    assert celeba_preprocess(im, 32, 100).size == (32, 32)

# ---------------------------------------------------------------- cache

def test_second_load_does_not_decode(root, monkeypatch):
    ds = load(root)
    assert ds.cache_path.exists() and ds.cache_path.parent == cache_of(root)
    assert not (root/'.mpvae_cache').exists()                  # nothing written into the dataset folder
    assert not [p for p in ds.cache_path.parent.iterdir() if p.name.endswith('.tmp') or '.tmp.' in p.name]
    def boom(*a, **k): raise AssertionError('decoded although a cache exists')
    monkeypatch.setattr(C, 'decode_celeba_images', boom)
    again = load(root)
    assert torch.equal(again.imgs, ds.imgs) and again.cache_path == ds.cache_path
    mm = load(root, mmap=True)
    assert torch.equal(mm.imgs, ds.imgs)
    with pytest.raises(AssertionError, match='decoded'): load(root, cache=False)

def test_cache_invalidation(root, monkeypatch):
    calls = []
    real = C.decode_celeba_images
    def counting(paths, *a, **k): calls.append(len(paths)); return real(paths, *a, **k)
    monkeypatch.setattr(C, 'decode_celeba_images', counting)
    load(root); load(root); assert calls == [N]
    load(root, crop=120); assert calls == [N, N]
    load(root, size=32); assert calls == [N, N, N]
    load(root, crop=120); load(root, size=32); assert len(calls) == 3          # both cached now
    load(root, split='valid'); assert calls[-1] == 5                           # another file list
    # an image replaced by a different one (different bytes) must not be served from the old cache
    before = load(root).imgs[4].clone(); n = len(calls)
    _put(root, '000005.jpg', np.full((218, 178, 3), 77, np.uint8))
    after = load(root)
    assert len(calls) == n + 1 and not torch.equal(after.imgs[4], before) and (after.imgs[4] == 77).all()
    assert len(list(cache_of(root).glob('*.npy'))) == 5

def test_explicit_cache_dir_and_corrupt_cache(root, tmp_path):
    cd = tmp_path/'cache'
    ds = load(root, cache_dir=cd)
    assert ds.cache_path.parent == cd and not cache_of(root).exists()
    ds.cache_path.write_bytes(ds.cache_path.read_bytes()[:1000])   # damaged behind our back
    with pytest.warns(UserWarning, match='unreadable CelebA cache'): again = load(root, cache_dir=cd)
    assert torch.equal(again.imgs, ds.imgs)

def test_failed_cache_write_leaves_nothing(root, monkeypatch):
    real_save = np.save
    def half_save(f, arr, *a, **k):
        Path(f).write_bytes(b'\x93NUMPY half'); raise OSError('disk full')
    monkeypatch.setattr(C.np, 'save', half_save)
    with pytest.warns(UserWarning, match='could not write the CelebA cache'): ds = load(root)
    assert ds.cache_path is None and len(ds) == N
    assert leftovers(cache_of(root)) == []

# ---------------------------------------------------------------- loaders

def test_celeba_dls(root):
    ds = load(root)
    dls = celeba_dls(ds, bs=8, seed=1, device='cpu')
    assert len(dls.train.dataset) == 38 and len(dls.valid.dataset) == 5
    xb, yb = dls.one_batch()
    assert xb.shape == (8, 3, 64, 64) and xb.dtype == torch.float32 and xb is yb
    seen = torch.cat([b[0] for b in dls.train]).flatten(1)
    assert len(seen) == 32   # drop_last: 38 // 8 * 8
    tr = ds.images(ds.split_idx('train')).flatten(1)
    # each training batch row is one of the training images, no image twice
    match = (seen[:, None, :] == tr[None]).all(-1)
    assert (match.sum(1) == 1).all() and (match.sum(0) <= 1).all()
    assert torch.equal(torch.cat([b[0] for b in dls.valid]), ds.images(ds.split_idx('valid')))
    order = lambda s: [b[0][:, 0, 0, 0].tolist() for b in celeba_dls(ds, bs=8, seed=s, device='cpu').train]
    assert order(3) == order(3) and order(3) != order(4)
    assert len(celeba_dls(ds, split=['train', 'valid'], valid_split='test', bs=8, device='cpu').train.dataset) == 43
    with pytest.raises(ValueError, match="no 'valid' images"): celeba_dls(load(root, split='train'))
    with pytest.raises(ValueError, match='unknown CelebA split'): celeba_dls(ds, split='training')

# ---------------------------------------------------------------- bad input

def _edit(path, fn):
    lines = path.read_text().splitlines(); fn(lines); path.write_text('\n'.join(lines) + '\n')

def test_missing_folder_and_files(root, tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'): load(tmp_path/'nowhere')
    for name in ('list_attr_celeba.txt', 'list_eval_partition.txt', 'img_align_celeba'):
        r = Path(shutil.copytree(root, tmp_path/f'x_{name}'))
        (shutil.rmtree if (r/name).is_dir() else Path.unlink)(r/name)
        with pytest.raises(FileNotFoundError, match=f'{name} is missing'): load(r)
    # torchvision's layout (root/celeba/...) is found
    tvroot = tmp_path/'tv'; shutil.copytree(root, tvroot/'celeba')
    assert len(load(tvroot)) == N

def test_missing_image(root):
    (root/'img_align_celeba'/'000007.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=r'1 image\(s\) listed in .*list_attr_celeba.txt are missing from .*img_align_celeba: 000007.jpg'):
        load(root)
    assert leftovers(cache_of(root)) == []

@pytest.mark.parametrize('case, edit, match', [
    ('columns', lambda L: L.__setitem__(4, L[4].rsplit(' ', 1)[0]), r'line 5 \(000003.jpg\) has 39 values; expected a filename and 40 values'),
    ('extra column', lambda L: L.__setitem__(6, L[6] + ' 1'), r'line 7 \(000005.jpg\) has 41 values'),
    ('value', lambda L: L.__setitem__(3, L[3].replace('.jpg -1', '.jpg  2', 1).replace('.jpg  1', '.jpg  2', 1)),
     r"line 4 \(000002.jpg\): attribute '5_o_Clock_Shadow' is '2', expected -1 or 1"),
    ('zero-one', lambda L: L.__setitem__(3, L[3].replace('-1', ' 0')), r"is '0', expected -1 or 1 \(this looks like a 0/1 file"),
    ('count', lambda L: L.pop(), r'line 1 says 48 images but the file lists 47'),
    ('count line', lambda L: L.__setitem__(0, 'images'), r"line 1 should be the number of images, got 'images'"),
    ('duplicate', lambda L: L.__setitem__(3, L[2]), r'lists 000001.jpg more than once'),
])
def test_bad_attribute_file(root, case, edit, match):
    _edit(root/'list_attr_celeba.txt', edit)
    with pytest.raises(ValueError, match=match) as e: load(root)
    assert 'list_attr_celeba.txt' in str(e.value)
    assert leftovers(cache_of(root)) == []

def test_partition_and_attribute_files_disagree(root, tmp_path):
    r2 = Path(shutil.copytree(root, tmp_path/'r2'))
    _edit(root/'list_eval_partition.txt', lambda L: L.append('999999.jpg 2'))
    with pytest.raises(ValueError, match=r'1 image\(s\) of list_eval_partition.txt have no line in list_attr_celeba.txt \(999999.jpg\)'):
        load(root)
    _edit(r2/'list_eval_partition.txt', lambda L: L.pop(10))
    with pytest.raises(ValueError, match=r'1 image\(s\) of list_attr_celeba.txt have no line in list_eval_partition.txt \(000011.jpg\)'):
        load(r2)
    _edit(r2/'list_eval_partition.txt', lambda L: L.append('000011.jpg 3'))
    with pytest.raises(ValueError, match=r"list_eval_partition.txt line 48 is '000011.jpg 3'; expected `filename 0\|1\|2`"):
        load(r2)

def test_wrong_image_size(root):
    _put(root, '000002.jpg', np.zeros((120, 100, 3), np.uint8))
    with pytest.raises(ValueError, match=r'000002.jpg is 100x120 \(width x height\), expected 178x218') as e: load(root)
    assert 'expect_size=None' in str(e.value)
    with pytest.raises(ValueError, match=r'000002.jpg is 100x120, smaller than the 148x148 centre crop'):
        load(root, expect_size=None)
    assert leftovers(cache_of(root)) == []
    # larger images are accepted when asked, cropped about their own centre
    a = np.zeros((240, 200, 3), np.uint8); a[46:194, 26:174] = 255
    _put(root, '000002.jpg', a, 'PNG')
    ds = load(root, expect_size=None)
    assert (ds.imgs[1] == 255).all()
    with pytest.raises(ValueError, match='crop=200 does not fit'): load(root, crop=200)

@pytest.mark.parametrize('kind', ['garbage', 'truncated', 'empty'])
def test_unreadable_jpeg(root, kind):
    p = root/'img_align_celeba'/'000009.jpg'
    data = p.read_bytes()
    p.write_bytes({'garbage': b'not a jpeg at all' * 50, 'truncated': data[:len(data) // 3], 'empty': b''}[kind])
    with pytest.raises(ValueError, match=r'could not decode .*000009.jpg') as e: load(root)
    assert 'img_align_celeba.zip' in str(e.value)
    assert leftovers(cache_of(root)) == []

def test_bad_arguments(root):
    with pytest.raises(ValueError, match='size must be'): load(root, size=0)
    with pytest.raises(ValueError, match='unknown CelebA split'): load(root, split='val')
    with pytest.raises(ValueError, match='max_items'): load(root, max_items=0)
    with pytest.raises(KeyError, match='no attribute'): load(root).labels('Beard')

def test_fast_and_slow_attribute_parsers_agree(root, monkeypatch):
    "The pandas fast path and the line-by-line path (used to locate errors) give the same result."
    fast = read_celeba_attrs(root/'list_attr_celeba.txt')
    monkeypatch.setattr(C, '_attrs_fast', lambda *a: None)
    slow = read_celeba_attrs(root/'list_attr_celeba.txt')
    assert fast[0] == slow[0] and fast[2] == slow[2] and np.array_equal(fast[1], slow[1]) and fast[1].dtype == slow[1].dtype
