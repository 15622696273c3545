"""mpvae.folder: any folder of images as MPVAE data, on folders the tests write themselves.

Expectations are independent of the loader: the crop geometry is checked against torchvision's own CenterCrop + Resize
and on painted images, labels against the rows the test wrote, the cache by counting decodes, and every bad input is
built on purpose.
"""
import os, shutil, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from PIL import Image

import mpvae.folder as F
from mpvae.folder import load_folder, folder_dls, read_labels, make_shapes_folder, COLOURS

def load(root, **kw):
    kw.setdefault('progress', False)
    return load_folder(root, **kw)

def put(path, arr, **kw):
    path = Path(path); path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kw); return path

def noise(h, w, c=3, seed=0):
    a = np.random.default_rng(seed).integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)
    return a

def leftovers(d):
    d = Path(d)
    return sorted(p.name for p in d.rglob('*')) if d.exists() else []

# ---------------------------------------------------------------- geometry and channels

SIZES = [(64, 64), (100, 70), (70, 100), (201, 133), (96, 64)]

@pytest.mark.parametrize('fit', ['crop', 'squash'])
def test_matches_torchvision(tmp_path, fit):
    "Lossless noise images of several shapes: the loader's pixels are torchvision's CenterCrop(min side)+Resize exactly."
    tv = pytest.importorskip('torchvision.transforms')
    for i, (w, h) in enumerate(SIZES): put(tmp_path/f'{i}.png', noise(h, w, seed=i))
    ds = load(tmp_path, size=48, fit=fit)
    assert ds.imgs.shape == (len(SIZES), 3, 48, 48) and ds.imgs.dtype == torch.uint8
    for k, (w, h) in enumerate(SIZES):
        with Image.open(tmp_path/f'{k}.png') as im:
            t = tv.Compose([tv.CenterCrop(min(w, h)), tv.Resize(48)]) if fit == 'crop' else tv.Resize((48, 48))
            ref = np.asarray(t(im.convert('RGB'))).transpose(2, 0, 1)
        assert np.array_equal(ds.imgs[k].numpy(), ref), (fit, w, h)

def test_crop_keeps_the_centred_square_by_hand(tmp_path):
    "A 120x80 image, white in columns 20..99 (the centred 80-square by hand: (120-80)/2 = 20), black outside."
    a = np.zeros((80, 120), np.uint8); a[:, 20:100] = 255
    put(tmp_path/'x.png', a)
    assert (load(tmp_path, size=40).imgs == 255).all()
    sq = load(tmp_path, size=40, fit='squash').imgs[0, 0].numpy()
    # squashed: the black margins are 20/120 of the width each side, 6.67 of 40 columns
    assert (sq[:, :6] == 0).all() and (sq[:, -6:] == 0).all() and (sq[:, 8:-8] == 255).all()

def test_grayscale_rgb_and_mixed(tmp_path):
    g, c, m = tmp_path/'gray', tmp_path/'rgb', tmp_path/'mixed'
    for i, (w, h) in enumerate(SIZES): put(g/f'{i}.png', noise(h, w, 1, i)); put(c/f'{i}.jpg', noise(h, w, 3, i), quality=90)
    m.mkdir(); shutil.copy(g/'0.png', m/'0.png')
    shutil.copy(c/'1.jpg', m/'1.jpg')
    gray, rgb, mixed = load(g, size=32), load(c, size=32), load(m, size=32)
    assert gray.imgs.shape == (5, 1, 32, 32) and rgb.imgs.shape == (5, 3, 32, 32) and mixed.imgs.shape == (2, 3, 32, 32)
    # the gray image in the mixed folder: three equal channels, each the gray loader's pixels
    assert all(torch.equal(mixed.imgs[0, k], gray.imgs[0, 0]) for k in range(3))
    assert load(c, size=32, channels=1).channels == 1 and load(g, size=32, channels=3).channels == 3
    # forced to one channel, an RGB image reads as PIL's luminance L = (299 R + 587 G + 114 B) / 1000
    one = load(c, size=32, channels=1).imgs[1, 0].float()
    r, gg, b = rgb.imgs[1].float()
    assert (one - (0.299 * r + 0.587 * gg + 0.114 * b)).abs().max() <= 2   # resize then convert vs convert then resize

def test_alpha_palette_and_16_bit(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8); rgba[..., 1] = 200; rgba[..., 3] = 0          # transparent green
    put(tmp_path/'a.png', rgba)
    put(tmp_path/'b.png', np.full((40, 40, 3), (10, 20, 30), np.uint8))
    Image.new('P', (40, 40), 0).save(tmp_path/'c.png')
    ds = load(tmp_path, size=20)
    assert ds.channels == 3 and (ds.imgs[0, 1] == 200).all() and (ds.imgs[0, 0] == 0).all()
    g16 = tmp_path/'g16'; g16.mkdir()
    Image.fromarray(np.full((30, 30), 65535, np.uint16)).save(g16/'w.png')
    Image.fromarray(np.full((30, 30), 257 * 100, np.uint16)).save(g16/'h.png')
    d16 = load(g16, size=10)
    assert d16.channels == 1 and (d16.imgs[0] == 100).all() and (d16.imgs[1] == 255).all()   # h.png, w.png

def test_exif_orientation(tmp_path):
    "A phone JPEG stored sideways with the EXIF Orientation tag 6 (rotate 90 clockwise to view) is read upright."
    a = np.zeros((40, 60, 3), np.uint8); a[:, :30] = 255            # stored: white left half, 60 wide, 40 high
    ex = Image.Exif(); ex[0x0112] = 6
    Image.fromarray(a).save(tmp_path/'p.jpg', quality=95, exif=ex)
    im = load(tmp_path, size=40, fit='squash').imgs[0, 0].float()
    # viewed: rotated 90 clockwise, the stored left half is the top half
    assert im[:16].mean() > 240 and im[-16:].mean() < 15

def test_files_order_extensions_and_recursion(tmp_path):
    for n in ('b.PNG', 'a.jpeg', 'c.JPG', 'z/d.png', '.hid/e.png', 'f.gif'): put(tmp_path/n, noise(32, 32))
    (tmp_path/'g.txt').write_text('not an image')
    assert load(tmp_path, size=16).files == ['a.jpeg', 'b.PNG', 'c.JPG']
    assert load(tmp_path, size=16, recursive=True).files == ['a.jpeg', 'b.PNG', 'c.JPG', 'z/d.png']
    assert load(tmp_path, size=16, exts=('.png',)).files == ['b.PNG']

# ---------------------------------------------------------------- the cache

@pytest.fixture
def folder(tmp_path, monkeypatch):
    "Five images; caches go to this test's own data folder ($MPVAE_DATA)."
    monkeypatch.setenv('MPVAE_DATA', str(tmp_path/'data'))
    for i, (w, h) in enumerate(SIZES): put(tmp_path/'imgs'/f'{i}.png', noise(h, w, seed=i))
    return tmp_path/'imgs'

def cache_of(folder): return F.default_cache_dir(folder, 'folder_cache')

def test_second_load_decodes_nothing(folder, monkeypatch):
    ds = load(folder, size=32)
    assert ds.cache_path.exists() and ds.cache_path.parent == cache_of(folder)
    assert sorted(p.name for p in folder.iterdir()) == [f'{i}.png' for i in range(5)]   # nothing written among the images
    monkeypatch.setattr(F, 'decode_images', lambda *a, **k: pytest.fail('decoded although a cache exists'))
    monkeypatch.setattr(F, 'image_channels', lambda *a, **k: pytest.fail('opened images although a cache exists'))
    again = load(folder, size=32)
    assert torch.equal(again.imgs, ds.imgs) and again.cache_path == ds.cache_path and again.files == ds.files
    assert torch.equal(load(folder, size=32, mmap=True).imgs, ds.imgs)

def test_cache_invalidation(folder, monkeypatch):
    calls, real = [], F.decode_images
    monkeypatch.setattr(F, 'decode_images', lambda paths, *a, **k: calls.append(len(paths)) or real(paths, *a, **k))
    load(folder, size=32); load(folder, size=32); assert calls == [5]
    load(folder, size=16); load(folder, size=32, fit='squash'); load(folder, size=32, channels=1); assert len(calls) == 4
    put(folder/'2.png', np.full((70, 201, 3), 9, np.uint8))               # another image under the same name
    ds = load(folder, size=32)
    assert len(calls) == 5 and (ds.imgs[2] == 9).all()
    (folder/'4.png').unlink()
    assert len(load(folder, size=32)) == 4 and len(calls) == 6

def test_cache_lives_under_data_dir_never_in_the_folder(folder, tmp_path):
    os.chmod(folder, 0o555)                                   # a read-only folder loads the same way
    try: ds = load(folder, size=32)
    finally: os.chmod(folder, 0o755)
    assert ds.cache_path.parent.parent == tmp_path/'data'/'folder_cache' and ds.cache_path.parent.name.startswith('imgs-')
    assert sorted(p.name for p in folder.iterdir()) == [f'{i}.png' for i in range(5)]
    shutil.copytree(folder, tmp_path/'other'/'imgs')          # the same name and files elsewhere: a cache of its own
    assert load(tmp_path/'other'/'imgs', size=32).cache_path.parent != ds.cache_path.parent
    assert load(folder, size=32, cache_dir=tmp_path/'c').cache_path.parent == tmp_path/'c'

def test_failed_cache_write_leaves_nothing(folder, monkeypatch):
    def half_save(f, arr, *a, **k): Path(f).write_bytes(b'\x93NUMPY half'); raise OSError('disk full')
    monkeypatch.setattr(F.np, 'save', half_save)
    with pytest.warns(UserWarning, match='could not write the image cache'): ds = load(folder, size=32)
    assert ds.cache_path is None and len(ds) == 5 and leftovers(cache_of(folder)) == []

def test_damaged_cache_is_rebuilt(folder):
    ds = load(folder, size=32)
    ds.cache_path.write_bytes(ds.cache_path.read_bytes()[:100])
    with pytest.warns(UserWarning, match='unreadable image cache'): again = load(folder, size=32)
    assert torch.equal(again.imgs, ds.imgs)

# ---------------------------------------------------------------- bad input: one clear line each, nothing cached

@pytest.mark.parametrize('kind', ['garbage', 'truncated', 'empty'])
def test_corrupt_image_is_named(folder, kind):
    p = folder/'3.png'; data = p.read_bytes()
    p.write_bytes({'garbage': b'not an image' * 40, 'truncated': data[:len(data) // 3], 'empty': b''}[kind])
    with pytest.raises(ValueError, match=r'could not decode .*3\.png.*not a readable \(or complete\) image file') as e:
        load(folder, size=32)
    assert '\n' not in str(e.value) and leftovers(cache_of(folder)) == []

def test_bad_folders_and_arguments(tmp_path, folder):
    with pytest.raises(FileNotFoundError, match='image folder .*nowhere does not exist'): load(tmp_path/'nowhere')
    with pytest.raises(NotADirectoryError, match='is a file, not a folder'): load(folder/'0.png')
    (tmp_path/'empty'/'sub').mkdir(parents=True); put(tmp_path/'empty'/'sub'/'x.png', noise(8, 8))
    with pytest.raises(ValueError, match=r'no images in .*empty: the files read are those ending in \.png, \.jpg, \.jpeg '
                                         r'\(any case\); it has sub-folders: pass recursive=True'):
        load(tmp_path/'empty')
    with pytest.raises(ValueError, match=r'0\.png is 64x64, smaller than the 65x65 the model reads'): load(folder, size=65)
    assert load(folder, size=65, upscale=True).imgs.shape == (5, 3, 65, 65)
    with pytest.raises(ValueError, match="fit must be one of"): load(folder, fit='pad')
    with pytest.raises(ValueError, match='channels must be 1'): load(folder, channels=4)
    with pytest.raises(ValueError, match='size must be a positive int'): load(folder, size=0)
    assert not [p for p in leftovers(cache_of(folder)) if '.tmp' in p]          # nothing half-written

# ---------------------------------------------------------------- loaders

def test_folder_dls(tmp_path):
    for i in range(50): put(tmp_path/f'{i:02d}.png', np.full((20, 20), i * 5, np.uint8))
    ds = load(tmp_path, size=8)
    dls = folder_dls(ds, valid_pct=0.2, bs=8, seed=1, device='cpu')
    tr, va = dls.train.dataset.rows.tolist(), dls.valid.dataset.rows.tolist()
    assert len(va) == 10 and sorted(tr + va) == list(range(50))
    xb, yb = dls.one_batch()
    assert xb.shape == (8, 1, 8, 8) and xb.dtype == torch.float32 and xb is yb
    seen = torch.cat([b[0] for b in dls.train])
    assert len(seen) == 40 and set((seen[:, 0, 0, 0] * 255 / 5).round().int().tolist()) == set(tr)  # each image's value
    assert torch.equal(torch.cat([b[0] for b in dls.valid]), ds.images(va))
    assert folder_dls(ds, valid_pct=0.2, bs=8, seed=1, device='cpu').valid.dataset.rows.tolist() == va   # seeded
    assert folder_dls(ds, valid_pct=0.2, bs=8, seed=2, device='cpu').valid.dataset.rows.tolist() != va
    with pytest.raises(ValueError, match='40 training images make no batch of 64'): folder_dls(ds, valid_pct=0.2)
    with pytest.raises(TypeError, match='needs the FolderImages'): folder_dls(ds.imgs)

# ---------------------------------------------------------------- labels

@pytest.fixture
def labelled(tmp_path):
    for n in ('a.png', 'b.png', 'sub/c.png', 'sub/d.png'): put(tmp_path/'f'/n, noise(16, 16))
    return load(tmp_path/'f', size=8, recursive=True)

def test_labels_round_trip(labelled, tmp_path):
    want = {'a.png': ('cat', 3), 'b.png': ('dog', 10), 'sub/c.png': ('cat', -1), 'sub/d.png': ('bird', 3)}
    rows = ['file, animal, legs'] + [f"{f}, {a}, {n}" for f, (a, n) in reversed(list(want.items()))]
    (tmp_path/'l.csv').write_text('\n'.join(rows) + '\n')
    y, names, classes = read_labels(tmp_path/'l.csv', labelled)
    assert names == ['animal', 'legs'] and classes == [['bird', 'cat', 'dog'], ['-1', '3', '10']]
    assert y.dtype == np.int64 and y.shape == (4, 2)
    for f, row in zip(labelled.files, y): assert (classes[0][row[0]], int(classes[1][row[1]])) == want[f]
    y2, names2, _ = read_labels(tmp_path/'l.csv', labelled, columns=['legs'])
    assert names2 == ['legs'] and np.array_equal(y2[:, 0], y[:, 1])

@pytest.mark.parametrize('text, match', [
    ('file,animal\na.png,cat\nb.png,dog\nsub/c.png,cat\n', r"1 image\(s\) have no row in .*l\.csv: sub/d\.png"),
    ('file,animal\na.png,cat\nb.png,dog\nsub/c.png,cat\nsub/d.png,x\ne.png,y\n', r"1 row\(s\) of .*name no image of the dataset: e\.png"),
    ('file,animal\na.png,cat\na.png,dog\nb.png,x\nsub/c.png,x\nsub/d.png,x\n', r"more than one row for \['a\.png'\]"),
    ('file,animal\na.png,cat\nb.png,\nsub/c.png,x\nsub/d.png,x\n', r"b\.png has no 'animal' label"),
    ('file\na.png\n', 'at least two columns'),
    # the label column first: the message says what the first column must be, not "more than one row"
    ('animal,file\ncat,a.png\ndog,b.png\ncat,sub/c.png\ncat,sub/d.png\n',
     r"the first column must hold the image file names, as ds\.files lists them \(e\.g\. a\.png\); its first column 'animal'"),
    # measurements are not classes: refused, with the fix
    ('file,weight\na.png,3.5\nb.png,4\nsub/c.png,2.25\nsub/d.png,1\n', r"column 'weight' holds numbers that are not whole \(e\.g\. 3\.5\).*pandas\.cut"),
])
def test_bad_labels(labelled, tmp_path, text, match):
    (tmp_path/'l.csv').write_text(text)
    with pytest.raises(ValueError, match=match): read_labels(tmp_path/'l.csv', labelled)

def test_labels_file_and_column_errors(labelled, tmp_path):
    with pytest.raises(FileNotFoundError, match='labels file .*nope.csv does not exist'): read_labels(tmp_path/'nope.csv', labelled)
    (tmp_path/'l.csv').write_text('file,animal\na.png,1\nb.png,1\nsub/c.png,1\nsub/d.png,1\n')
    with pytest.raises(ValueError, match=r"no column 'colour'; its label columns are \['animal'\]"):
        read_labels(tmp_path/'l.csv', labelled, columns=['colour'])

def test_shapes_folder_labels_are_in_the_pixels(tmp_path):
    "make_shapes_folder: every image's most frequent bright colour is the colour its labels.csv row names."
    root = make_shapes_folder(tmp_path/'s', n=24, seed=3)
    ds = load(root, size=32)
    y, names, classes = read_labels(root/'labels.csv', ds)
    assert len(ds) == 24 and names == ['shape', 'colour', 'scale']
    for img, row in zip(ds.imgs, y):
        px = img.reshape(3, -1).T.int()
        bright = px[px.max(1).values > 150]
        colour = classes[1][row[1]]
        assert (bright - torch.tensor(COLOURS[colour])).abs().max(1).values.lt(40).float().mean() > 0.8, colour
    assert (root/'0000.png').read_bytes() == (make_shapes_folder(tmp_path/'t', n=1, seed=3)/'0000.png').read_bytes()

def test_class_folders_give_the_labels_the_csv_gives(tmp_path):
    "One sub-folder per shape, made from a CSV-labelled folder: class_labels must agree with the CSV row by row."
    src = make_shapes_folder(tmp_path/'flat', n=30, seed=3)
    rows = [l.split(',') for l in (src/'labels.csv').read_text().splitlines()[1:]]
    for f, shape, *_ in rows: put(tmp_path/'classes'/shape/f, np.asarray(Image.open(src/f)))
    ds = load(tmp_path/'classes', size=32, recursive=True)
    y, names, classes = F.class_labels(ds)
    want = {f'{shape}/{f}': shape for f, shape, *_ in rows}
    assert names == ['class'] and classes == [sorted(set(want.values()))]
    assert [classes[0][k] for k in y[:, 0]] == [want[f] for f in ds.files]
    with pytest.raises(ValueError, match='sub-folders: pass recursive=True'): load(tmp_path/'classes', size=32)

def test_every_unreadable_file_is_named_at_once(tmp_path):
    "12 good images and 12 broken ones: one error with the count, the first 10 names in order, and the first's reason."
    for i in range(12): put(tmp_path/f'good{i:02d}.png', noise(40, 40, seed=i))
    for i in range(12): (tmp_path/f'bad{i:02d}.png').write_bytes(b'not a png')
    with pytest.raises(ValueError) as e: load(tmp_path, size=32, cache=False, n_workers=2)
    msg = str(e.value)
    assert msg.startswith('12 of 24 images could not be read (bad00.png, bad01.png,'), msg
    assert 'bad09.png and 2 more); the first: could not decode' in msg and 'bad00.png' in msg.split('the first:')[1]

def test_labels_semicolons_are_read_and_named(labelled, tmp_path):
    "A ';'-separated CSV is read as such; when it is still wrong, the message says which separator was read."
    (tmp_path/'l.csv').write_text('file;animal\na.png;cat\nb.png;dog\nsub/c.png;cat\nsub/d.png;bird\n')
    y, names, classes = read_labels(tmp_path/'l.csv', labelled)
    assert names == ['animal'] and [classes[0][k] for k in y[:, 0]] == ['cat', 'dog', 'cat', 'bird']
    (tmp_path/'l.csv').write_text('animal;file\ncat;a.png\ndog;b.png\ncat;sub/c.png\nbird;sub/d.png\n')
    with pytest.raises(ValueError, match="read as ';'-separated"): read_labels(tmp_path/'l.csv', labelled)
