"""dSprites: factor grid, official-file reader, calibrated renderer, render cache, dataset object and loaders.

Expectations come from outside the code under test: numpy's own mixed-radix conversion, closed-form areas, a
brute-force full-canvas renderer, the real dSprites frames in reference/, and hand-built npz files."""
import os, pickle, warnings, zipfile
from pathlib import Path
import numpy as np
import pytest
import torch
from matplotlib.path import Path as MplPath

import mpvae.dsprites as D
from mpvae.dsprites import (DSPRITES_FACTORS as F, FactorSpace, DSprites, DSpritesFileError, RENDERER_VERSION, GEOMETRY,
                            render, render_classes, render_dsprites, match_frames, load_reference_frames,
                            read_dsprites_npz, write_dsprites_npz, save_render_cache, load_render_cache,
                            render_cache_path, load_dsprites, dsprites_dls, unpack_images)

SMALL = F.subset(scale=[0, 5], orientation=[0, 7, 30], posX=[0, 13, 31], posY=[0, 31])   # 3*2*3*3*2 = 108 images


# ---------------------------------------------------------------- factor space
def test_index_classes_round_trip_and_known_indices():
    assert F.n == 737_280 and F.sizes == (1, 3, 6, 40, 32, 32)
    assert F.classes_to_index([0, 2, 5, 39, 31, 31]) == 737_279
    assert F.classes_to_index([0, 1, 0, 0, 0, 0]) == 245_760
    assert F.classes_to_index([0, 0, 0, 0, 0, 1]) == 1 and F.classes_to_index([0, 0, 0, 0, 1, 0]) == 32
    idx = np.random.default_rng(0).integers(0, F.n, 5000)
    cl = F.index_to_classes(idx)
    # numpy's C-order unravel (last axis fastest) is an independent mixed-radix implementation
    np.testing.assert_array_equal(cl, np.stack(np.unravel_index(idx, F.sizes), -1))
    np.testing.assert_array_equal(F.classes_to_index(cl), idx)
    np.testing.assert_array_equal(F.classes_to_index(F.all_classes()), np.arange(F.n))
    np.testing.assert_allclose(F.values[3][[0, -1]], [0, 2 * np.pi])
    np.testing.assert_allclose(F.values[2], [0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    with pytest.raises(IndexError, match="'posY'"): F.classes_to_index([0, 0, 0, 0, 0, 32])
    with pytest.raises(IndexError): F.index_to_classes([-1])


def test_sample_classes_with_fixed_factors():
    rng = np.random.default_rng(0)
    c = F.sample_classes(20_000, rng, fixed={'shape': 1, 'posX': 5})
    assert c.shape == (20_000, 6) and c.dtype == np.int64
    assert set(c[:, 1]) == {1} and set(c[:, 4]) == {5}
    # free factors are uniform: every class of orientation appears about 20000/40 = 500 times
    counts = np.bincount(c[:, 3], minlength=40)
    assert counts.min() > 380 and counts.max() < 620
    assert set(c[:, 5]) == set(range(32))
    per_row = F.sample_classes(4, np.random.default_rng(1), fixed={3: [0, 1, 2, 3]})
    np.testing.assert_array_equal(per_row[:, 3], [0, 1, 2, 3])
    with pytest.raises(IndexError): F.sample_classes(3, rng, fixed={'scale': 6})
    with pytest.raises(KeyError, match='unknown factor'): F.sample_classes(3, rng, fixed={'size': 0})
    with pytest.raises(TypeError, match='Generator'): F.sample_classes(3, 0)


def test_factor_space_subset_and_fingerprint():
    assert SMALL.sizes == (1, 3, 2, 3, 3, 2) and SMALL.n == 108
    np.testing.assert_allclose(SMALL.values[3], F.values[3][[0, 7, 30]])
    assert SMALL.fingerprint() != F.fingerprint()
    assert FactorSpace(F.names, F.values) == F and FactorSpace(F.names, F.values).fingerprint() == F.fingerprint()


# ---------------------------------------------------------------- renderer
def _brute_force(shape, scale, th, px, py):
    "Every pixel centre of the canvas tested against the sprite (no windows, no tables): the renderer's definition."
    cols, rows = np.meshgrid(np.arange(64) + 0.5, np.arange(64) + 0.5)
    x, y = cols - (16 + 32 * px), rows - (16 + 32 * py)
    u = (np.cos(th) * x - np.sin(th) * y) / scale; v = (np.sin(th) * x + np.cos(th) * y) / scale
    if shape == 0: return (np.abs(u) <= GEOMETRY['square_half']) & (np.abs(v) <= GEOMETRY['square_half'])
    if shape == 1: return (u / GEOMETRY['ellipse_a'])**2 + (v / GEOMETRY['ellipse_b'])**2 <= 1
    t = np.linspace(0, 2 * np.pi, 8_001)
    hx, hy = np.sin(t)**3, 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
    ymax = (13 * np.cos(np.linspace(0, 1, 100_001)) - 5 * np.cos(2 * np.linspace(0, 1, 100_001))
            - 2 * np.cos(3 * np.linspace(0, 1, 100_001)) - np.cos(4 * np.linspace(0, 1, 100_001))).max()
    rows_ = GEOMETRY['heart_top'] + (ymax - hy) / (ymax + 17) * (GEOMETRY['heart_bottom'] - GEOMETRY['heart_top'])
    poly = MplPath(np.c_[hx * GEOMETRY['heart_half_width'], rows_])
    out = np.zeros(64 * 64, bool); near = (np.abs(u) < 10).ravel() & (np.abs(v) < 10.5).ravel()
    out[near] = poly.contains_points(np.c_[u.ravel()[near], v.ravel()[near]])
    return out.reshape(64, 64)


def test_render_agrees_with_brute_force_everywhere_on_the_canvas():
    rng = np.random.default_rng(0)
    n = 60
    shape = np.repeat([0, 1, 2], n // 3)
    scale = rng.uniform(0.5, 1, n); scale[:6] = 1.0
    th = rng.uniform(0, 2 * np.pi, n)
    px, py = rng.uniform(0, 1, n), rng.uniform(0, 1, n)
    px[::4], py[1::4] = 1.0, 0.0                               # sprites touching the position range's ends
    ims = render(shape, scale, th, px, py).numpy()
    ref = np.stack([_brute_force(*a) for a in zip(shape, scale, th, px, py)])
    sq_el = shape < 2
    assert (ims[sq_el] == ref[sq_el]).all()
    assert (ims[~sq_el] != ref[~sq_el]).sum() <= 2             # the heart's polygon vs its tabulated outline: boundary ties only


def test_render_is_binary_64x64_with_closed_form_areas():
    cl = F.sample_classes(300, np.random.default_rng(2))
    ims = render_classes(cl)
    assert ims.shape == (300, 64, 64) and ims.dtype == torch.bool
    area = ims.sum((1, 2)).numpy()
    s = F.values[2][cl[:, 2]]
    closed = np.where(cl[:, 1] == 0, (2 * 9.6 * s)**2, np.where(cl[:, 1] == 1, np.pi * 12.77 * 7.215 * s**2, np.nan))
    ok = cl[:, 1] < 2
    assert np.all(np.abs(area[ok] / closed[ok] - 1) < 0.12)
    # orientation 0 and 2*pi are the same image, as in the official file
    a = F.sample_classes(20, np.random.default_rng(3), fixed={'orientation': 0}); b = a.copy(); b[:, 3] = 39
    assert (render_classes(a) == render_classes(b)).all()
    with pytest.raises(ValueError, match='positions'): render(0, 1.0, 0.0, 1.2, 0.0)


def test_calibration_against_real_frames():
    frames = load_reference_frames()
    assert frames.shape == (160, 64, 64)
    m = match_frames(frames)
    med, worst = np.median(m['iou']), m['iou'].min()
    # a sprite one pixel off, or one scale step too big or small, loses far more than 2% IoU on a small sprite
    assert med >= 0.999 and worst >= 0.98, (med, worst)          # what the calibrated geometry achieves
    # the gif's structure (its README): hearts over scale, orientation and position, then ellipses, then squares
    shapes = m['classes'][:, 1]
    assert (shapes[:96] == 2).all() and (shapes[96:128] == 1).all() and (shapes[128:] == 0).all()
    # rotation direction: consecutive frames of the heart's rotation step the orientation class up by 2
    assert m['classes'][10:29, 3].tolist() == list(range(2, 39, 2))
    # the position loop goes down posY at posX=0, then along posX at posY=31
    assert m['classes'][29:46, 4].tolist() == [0] * 17 and m['classes'][46:62, 5].tolist() == [31] * 16
    assert m['classes'][46:62, 4].tolist() == list(range(2, 31, 2)) + [31]


# ---------------------------------------------------------------- official file
def _official_like(path, images, factors, with_metadata=True, **override):
    "An npz laid out like the official file, written without mpvae."
    cl = np.stack(np.unravel_index(np.arange(factors.n), factors.sizes), -1).astype(np.int64)
    arrays = dict(imgs=images.astype(np.uint8), latents_classes=cl,
                  latents_values=np.stack([factors.values[i][cl[:, i]] for i in range(6)], -1))
    if with_metadata: arrays['metadata'] = np.array({'latents_sizes': np.array(factors.sizes), 'latents_names': factors.names,
                                                'title': 'dSprites dataset', 'version': 1}, dtype=object)
    arrays.update(override)
    np.savez_compressed(path, **{k: v for k, v in arrays.items() if v is not None})
    return Path(path)


def test_official_file_round_trip(tmp_path):
    imgs = render_classes(SMALL.all_classes(), SMALL).numpy()
    p = _official_like(tmp_path / 'small.npz', imgs, SMALL)
    packed, meta = read_dsprites_npz(p, SMALL)
    np.testing.assert_array_equal(np.unpackbits(packed, axis=1).reshape(-1, 64, 64), imgs)
    assert meta['title'] == 'dSprites dataset' and tuple(meta['latents_sizes']) == SMALL.sizes
    ds = load_dsprites(path=p, factors=SMALL)
    assert ds.source == 'official' and ds.path == p and len(ds) == SMALL.n
    np.testing.assert_array_equal(ds.images(np.arange(SMALL.n))[:, 0].numpy(), imgs)
    # no metadata: still readable; our writer produces the same format
    _, meta = read_dsprites_npz(_official_like(tmp_path / 'nometa.npz', imgs, SMALL, with_metadata=False), SMALL)
    assert meta is None
    p2 = write_dsprites_npz(tmp_path / 'ours.npz', imgs, SMALL)
    np.testing.assert_array_equal(read_dsprites_npz(p2, SMALL)[0], packed)
    # the official file in the data folder is picked up without a path
    official = tmp_path / 'data' / D.DSPRITES_FILENAME; official.parent.mkdir()
    official.write_bytes(p.read_bytes())
    with pytest.raises(DSpritesFileError, match='latents_classes has shape'):   # it is found, and checked against the full grid
        load_dsprites(cache_dir=tmp_path / 'data')


class _Bomb:
    "Unpickling this creates a file: proof that a pickle was executed."
    def __init__(self, flag): self.flag = flag
    def __reduce__(self): return (open, (str(self.flag), 'w'))


def test_official_file_errors(tmp_path):
    imgs = np.zeros((SMALL.n, 64, 64), np.uint8)
    good = _official_like(tmp_path / 'good.npz', imgs, SMALL)
    with pytest.raises(FileNotFoundError, match='nope.npz'): read_dsprites_npz(tmp_path / 'nope.npz', SMALL)
    with pytest.raises(FileNotFoundError, match='nope.npz'): load_dsprites(path=tmp_path / 'nope.npz')
    cut = tmp_path / 'cut.npz'; cut.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    with pytest.raises(DSpritesFileError, match=r'cut\.npz.*truncated or corrupt'): read_dsprites_npz(cut, SMALL)
    np.savez(tmp_path / 'keys.npz', images=imgs)
    with pytest.raises(DSpritesFileError, match=r"keys\.npz lacks \['imgs', 'latents_classes', 'latents_values'\]"):
        read_dsprites_npz(tmp_path / 'keys.npz', SMALL)
    small_imgs = _official_like(tmp_path / 'shape.npz', imgs, SMALL, imgs=np.zeros((SMALL.n, 32, 32), np.uint8))
    with pytest.raises(DSpritesFileError, match=r"shape\.npz: 'imgs' has shape \(108, 32, 32\), expected \(108, 64, 64\)"):
        read_dsprites_npz(small_imgs, SMALL)
    with pytest.raises(DSpritesFileError, match='other than 0 and 1'):
        read_dsprites_npz(_official_like(tmp_path / 'v255.npz', imgs + 255, SMALL), SMALL)
    shuffled = np.stack(np.unravel_index(np.arange(SMALL.n)[::-1], SMALL.sizes), -1)
    with pytest.raises(DSpritesFileError, match='official order'):
        read_dsprites_npz(_official_like(tmp_path / 'order.npz', imgs, SMALL, latents_classes=shuffled), SMALL)
    with pytest.raises(DSpritesFileError, match='latents_values'):
        read_dsprites_npz(_official_like(tmp_path / 'vals.npz', imgs, SMALL, latents_values=np.zeros((SMALL.n, 6))), SMALL)
    # a pickle hidden in an array key is refused without being executed; only metadata is ever unpickled
    flag = tmp_path / 'executed'
    bomb = np.empty(SMALL.n * 64 * 64, dtype=object); bomb[:] = 0; bomb[0] = _Bomb(flag)
    with pytest.raises(DSpritesFileError, match="'imgs' is an object array; refusing"):
        read_dsprites_npz(_official_like(tmp_path / 'bomb.npz', imgs, SMALL, imgs=bomb.reshape(SMALL.n, 64, 64)), SMALL)
    bomb_cls = np.empty((SMALL.n, 6), dtype=object); bomb_cls[:] = _Bomb(flag)
    with pytest.raises(DSpritesFileError, match="'latents_classes' is an object array"):
        read_dsprites_npz(_official_like(tmp_path / 'bomb2.npz', imgs, SMALL, latents_classes=bomb_cls), SMALL)
    assert not flag.exists()
    with pytest.raises(DSpritesFileError, match='metadata latents_sizes'):
        read_dsprites_npz(_official_like(tmp_path / 'meta.npz', imgs, SMALL, metadata=np.array({'latents_sizes': np.array([1, 3, 6, 40, 32, 32])}, dtype=object)), SMALL)


# ---------------------------------------------------------------- render cache
def test_render_cache_round_trip_and_versioning(tmp_path):
    ds = load_dsprites(cache_dir=tmp_path, factors=SMALL, progress=False)
    cache = render_cache_path(tmp_path, SMALL)
    assert ds.source == 'rendered' and cache.is_file() and f'_v{RENDERER_VERSION}_' in cache.name
    np.testing.assert_array_equal(np.unpackbits(ds.packed.numpy(), axis=1).reshape(-1, 64, 64),
                                  render_classes(SMALL.all_classes(), SMALL).numpy())
    again = load_dsprites(cache_dir=tmp_path, factors=SMALL)
    assert torch.equal(again.packed, ds.packed)
    # a header from another renderer version under the current name is rejected, naming the file and the fix
    save_render_cache(cache, ds.packed.numpy(), SMALL, version=RENDERER_VERSION + 1)
    with pytest.raises(DSpritesFileError, match=rf'{cache.name} was written by renderer version {RENDERER_VERSION + 1}.*rebuild=True'):
        load_dsprites(cache_dir=tmp_path, factors=SMALL)
    assert torch.equal(load_dsprites(cache_dir=tmp_path, factors=SMALL, rebuild=True, progress=False).packed, ds.packed)
    assert int(np.load(cache)['renderer_version']) == RENDERER_VERSION
    # a cache of an older version (older file name) is never read: the grid is re-rendered, with a warning
    old = tmp_path / cache.name.replace(f'_v{RENDERER_VERSION}_', f'_v{RENDERER_VERSION - 1}_')
    cache.rename(old)
    with pytest.warns(UserWarning, match='other renderer versions'):
        fresh = load_dsprites(cache_dir=tmp_path, factors=SMALL, progress=False)
    assert torch.equal(fresh.packed, ds.packed) and cache.is_file()
    # another grid's cache is refused
    with pytest.raises(DSpritesFileError, match='holds the grid'): load_render_cache(cache, SMALL.subset(posY=[0]))


def test_render_cache_is_atomic_and_checked(tmp_path, monkeypatch):
    cache = render_cache_path(tmp_path, SMALL)
    # a crash while writing leaves nothing behind (no cache, no temporary file)
    real_savez = np.savez
    def dying_savez(file, **arrays):
        with open(file, 'wb') as f: f.write(b'PK\x03\x04 half a zip')
        raise KeyboardInterrupt('power cut')
    monkeypatch.setattr(D.np, 'savez', dying_savez)
    with pytest.raises(KeyboardInterrupt): load_dsprites(cache_dir=tmp_path, factors=SMALL, progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(D.np, 'savez', real_savez)
    # a crash while rendering writes nothing either
    real = D.render_classes; calls = []
    def dying_render(*a, **k):
        calls.append(1)
        if len(calls) >= 2: raise RuntimeError('killed')
        return real(*a, **k)
    monkeypatch.setattr(D, 'render_classes', dying_render)
    with pytest.raises(RuntimeError): D.render_dsprites(SMALL, chunk=32, progress=False)
    with pytest.raises(RuntimeError): load_dsprites(cache_dir=tmp_path, factors=SMALL, progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(D, 'render_classes', real)
    # a corrupted byte in the cache is caught by zip's CRC
    load_dsprites(cache_dir=tmp_path, factors=SMALL, progress=False)
    raw = bytearray(cache.read_bytes()); i = len(raw) // 2; raw[i] ^= 0xFF; cache.write_bytes(bytes(raw))
    with pytest.raises(DSpritesFileError, match='truncated or corrupt'): load_render_cache(cache, SMALL)
    cache.write_bytes(bytes(raw[:len(raw) // 3]))
    with pytest.raises(DSpritesFileError, match='truncated or corrupt'): load_render_cache(cache, SMALL)


# ---------------------------------------------------------------- dataset object and loaders
def test_dsprites_object(tmp_path):
    ds = load_dsprites(cache_dir=tmp_path, factors=SMALL, progress=False)
    x = ds.images([3, 0, 3])
    assert x.shape == (3, 1, 64, 64) and x.dtype == torch.float32 and set(x.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(x[0], x[2])
    assert torch.equal(x[:, 0].bool(), render_classes(SMALL.index_to_classes([3, 0, 3]), SMALL))
    assert torch.equal(ds.images_from_classes(SMALL.index_to_classes([5, 9])), ds.images([5, 9]))
    np.testing.assert_array_equal(ds.labels('shape'), np.repeat([0, 1, 2], SMALL.n // 3))
    np.testing.assert_array_equal(ds.labels('posY'), np.tile([0, 1], SMALL.n // 2))
    np.testing.assert_allclose(ds.values[:, 3], SMALL.values[3][ds.classes[:, 3]])
    with pytest.raises(ValueError, match='packed must be'): DSprites(np.zeros((5, 512), np.uint8), SMALL)
    # the full grid's memory: 512 bytes per image plus classes and values (int64/float64, 6 each)
    assert F.n * (512 + 2 * 6 * 8) < 1e9


def test_unpack_images_bit_order():
    im = np.zeros((3, 64, 64), np.uint8); im[0, 0, 0] = im[1, 5, 63] = im[2, 63, 9] = 1
    p = torch.from_numpy(np.packbits(im.reshape(3, -1), axis=1))
    assert torch.equal(unpack_images(p)[:, 0], torch.from_numpy(im).float())
    assert torch.equal(D._unpack_torch(p), unpack_images(p))


def _index_coded(n):
    "A DSprites whose image i spells i in its first 32 pixels, so batches can be traced back to indices."
    fs = FactorSpace(['color', 'shape', 'scale', 'orientation', 'posX', 'posY'], [[1.], [1.], [1.], [0.], np.arange(n) / max(n - 1, 1), [0.]])
    packed = np.zeros((n, 512), np.uint8)
    packed[:, :4] = np.arange(n, dtype='>u4').view(np.uint8).reshape(n, 4)
    return DSprites(packed, fs)


def _indices(batch):
    bits = batch.reshape(len(batch), -1)[:, :32].to(torch.uint8).numpy()
    return np.packbits(bits, axis=1).view('>u4').ravel()


def test_loader_covers_every_index_once_per_epoch():
    ds = _index_coded(1000)
    dls = dsprites_dls(ds, bs=64, valid_pct=0.2, seed=3, device='cpu', drop_last=False)
    ep1 = np.concatenate([_indices(x) for x, y in dls.train]); val = np.concatenate([_indices(x) for x, _ in dls.valid])
    assert len(val) == 200 and len(ep1) == 800
    np.testing.assert_array_equal(np.sort(np.r_[ep1, val]), np.arange(1000))     # each index exactly once
    ep2 = np.concatenate([_indices(x) for x, _ in dls.train])
    np.testing.assert_array_equal(np.sort(ep2), np.sort(ep1))
    assert not np.array_equal(ep1, ep2)                                          # reshuffled each epoch
    dls2 = dsprites_dls(ds, bs=64, valid_pct=0.2, seed=3, device='cpu', drop_last=False)
    np.testing.assert_array_equal(np.concatenate([_indices(x) for x, _ in dls2.train]), ep1)   # same seed, same order
    # default drop_last: full batches only, no index twice, fewer than bs skipped
    d3 = dsprites_dls(ds, bs=64, valid_pct=0.2, seed=3, device='cpu')
    e = [_indices(x) for x, _ in d3.train]
    assert all(len(b) == 64 for b in e)
    e = np.concatenate(e); assert len(np.unique(e)) == len(e) and 800 - len(e) < 64
    # a seeded subset of n images
    d4 = dsprites_dls(ds, bs=50, valid_pct=0.0, n=300, device='cpu', drop_last=False)
    sub = np.concatenate([_indices(x) for x, _ in d4.train])
    assert len(sub) == 300 and len(np.unique(sub)) == 300
    with pytest.raises(ValueError, match='n must lie'): dsprites_dls(ds, n=2000)
