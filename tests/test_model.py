"""mpvae.model: the paper's layer list, generalisation, input checks, save/load.

The layer table below is written by hand from the paper's section 4 (its layer description) and is compared with what
forward hooks record while a batch flows through the net: the test never looks at how the model is built.
"""
import math, tempfile
from pathlib import Path
import pytest
import torch
from torch import nn
from mpvae.model import MPVAE, MPVAEConfig, MPVAEOutput, save_model, load_model

# (kind, kernel, stride, padding, input shape (c, h, w) or (features,), output shape) in execution order.
# "relu" rows check that every hidden layer is followed by a ReLU; mu/logvar heads and the output layer are not.
C = 'conv'; T = 'convT'; L = 'linear'; R = 'relu'
PAPER_DSPRITES = [
    # encoder trunk: 4 convs 4x4/s2/p1, 64 -> 32 -> 16 -> 8 -> 4
    (C, 4, 2, 1, (1, 64, 64), (32, 32, 32)), (R,),
    (C, 4, 2, 1, (32, 32, 32), (32, 16, 16)), (R,),
    (C, 4, 2, 1, (32, 16, 16), (64, 8, 8)), (R,),
    (C, 4, 2, 1, (64, 8, 8), (64, 4, 4)), (R,),
    # path 1: one FC on the 4x4 map -> mu_1, logvar_1 (3 + 3)
    (L, None, None, None, (64*4*4,), (2*3,)),
    # path 2: one more conv 4 -> 2, then one FC -> mu_2, logvar_2 (9 + 9)
    (C, 4, 2, 1, (64, 4, 4), (64, 2, 2)), (R,),
    (L, None, None, None, (64*2*2,), (2*9,)),
    # decoder path 1: FC z_1 -> 4x4 map
    (L, None, None, None, (3,), (64*4*4,)), (R,),
    # decoder path 2: FC z_2 -> 2x2 map, transposed conv -> 4x4
    (L, None, None, None, (9,), (64*2*2,)), (R,),
    (T, 4, 2, 1, (64, 2, 2), (64, 4, 4)), (R,),
    # concatenation along channels (64 + 64), two 3x3 convs
    (C, 3, 1, 1, (128, 4, 4), (64, 4, 4)), (R,),
    (C, 3, 1, 1, (64, 4, 4), (64, 4, 4)), (R,),
    # four transposed convs 4x4/s2/p1 -> 64x64; the last emits the image channel (logits, no activation)
    (T, 4, 2, 1, (64, 4, 4), (64, 8, 8)), (R,),
    (T, 4, 2, 1, (64, 8, 8), (32, 16, 16)), (R,),
    (T, 4, 2, 1, (32, 16, 16), (32, 32, 32)), (R,),
    (T, 4, 2, 1, (32, 32, 32), (1, 64, 64)),
]

def record_layers(model, x):
    "Run `x` through `model`, recording every leaf conv/linear/relu module in call order."
    rows, hooks = [], []
    def hook(mod, inp, out):
        i, o = tuple(inp[0].shape[1:]), tuple(out.shape[1:])
        if isinstance(mod, nn.ConvTranspose2d): rows.append((T, mod.kernel_size[0], mod.stride[0], mod.padding[0], i, o))
        elif isinstance(mod, nn.Conv2d): rows.append((C, mod.kernel_size[0], mod.stride[0], mod.padding[0], i, o))
        elif isinstance(mod, nn.Linear): rows.append((L, None, None, None, i, o))
        elif isinstance(mod, nn.ReLU): rows.append((R,))
    for m in model.modules():
        if not list(m.children()): hooks.append(m.register_forward_hook(hook))
    try: out = model(x)
    finally:
        for h in hooks: h.remove()
    return rows, out

def test_paper_dsprites_layer_list():
    torch.manual_seed(0)
    model = MPVAE()                               # the default is the paper's dSprites net
    rows, out = record_layers(model, torch.rand(2, 1, 64, 64))
    assert len(rows) == len(PAPER_DSPRITES)
    for i, (got, exp) in enumerate(zip(rows, PAPER_DSPRITES)): assert got == exp, f"layer {i}: got {got}, expected {exp}"
    assert [m.shape[1] for m in out.mu] == [3, 9] and [lv.shape[1] for lv in out.logvar] == [3, 9]
    assert out.logits.shape == (2, 1, 64, 64)
    # every learnable module was used: no hidden extra layers
    n_param_layers = sum(1 for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)))
    assert n_param_layers == sum(1 for r in PAPER_DSPRITES if r[0] != R)

def test_celeba_and_baseline_shapes():
    rows, out = record_layers(MPVAE(in_channels=3, latent_dims=(8, 24)), torch.rand(2, 3, 64, 64))
    assert rows[0][4] == (3, 64, 64) and rows[-1][5] == (3, 64, 64)
    lin = [r for r in rows if r[0] == L]
    assert lin[0][5] == (16,) and lin[1][5] == (48,) and lin[2][4] == (8,) and lin[3][4] == (24,)
    # the baseline VAE: same class, one path after the 4-conv trunk, FC to 2*12, decoder without the path-2 branch
    rows, out = record_layers(MPVAE(latent_dims=(12,)), torch.rand(2, 1, 64, 64))
    kinds = [r[0] for r in rows if r[0] != R]
    assert kinds == [C]*4 + [L, L] + [C, C] + [T]*4
    assert [r for r in rows if r[0] == L][0][4:] == ((1024,), (24,))

@pytest.mark.parametrize('size,taps,dims', [(32, (3, 4, 5), (2, 3, 4)), (128, (4, 6), (5, 7)), (64, (2, 6), (4, 4)), (64, (6,), (10,))])
def test_any_paths_and_sizes(size, taps, dims):
    m = MPVAE(img_size=size, taps=taps, latent_dims=dims)
    x = torch.rand(3, 1, size, size)
    rows, out = record_layers(m, x)
    assert out.logits.shape == x.shape
    assert [t.shape for t in m.encode(x)] == [(3, d) for d in dims]
    # each path's encoder FC reads the map after exactly `tap` stride-2 convs
    enc_fc = [r for r in rows if r[0] == L][:len(dims)]
    for (tap, d), r in zip(zip(taps, dims), enc_fc):
        side = size // 2**tap
        assert r[4][0] % (side*side) == 0 and r[5] == (2*d,)
    # decoder: taps[0] transposed convs after the merge, plus taps[k]-taps[0] per deeper path
    assert sum(1 for r in rows if r[0] == T) == taps[0] + sum(t - taps[0] for t in taps)

def test_config_errors():
    with pytest.raises(ValueError, match='allows taps up to 5'): MPVAEConfig(img_size=32, latent_dims=(3, 9), taps=(5, 6))
    with pytest.raises(ValueError, match='one tap depth per path'): MPVAEConfig(latent_dims=(3, 9), taps=(4, 5, 6))
    with pytest.raises(ValueError, match='strictly increasing'): MPVAEConfig(taps=(4, 4))
    with pytest.raises(ValueError, match='divisible'): MPVAEConfig(img_size=96, taps=(4, 6))
    with pytest.raises(ValueError, match='up_channels needs 3'): MPVAEConfig(up_channels=(8,))
    with pytest.raises(ValueError, match='at least one path'): MPVAEConfig(latent_dims=())
    with pytest.raises(ValueError, match=r'\(n, 1, 64, 64\)'): MPVAE()(torch.rand(2, 1, 32, 32))

def test_logvar_bounded_and_sampling():
    torch.manual_seed(0)
    m = MPVAE(logvar_bound=5.)
    with torch.no_grad():
        for h in m.enc_heads: h[-1].bias.fill_(1e6)     # a raw log-variance far beyond any float range of exp
    out = m(torch.rand(4, 1, 64, 64))
    for lv, z in zip(out.logvar, out.z):
        assert lv.max() <= 5. and torch.isfinite(lv.exp()).all() and torch.isfinite(z).all()
    # reparameterisation: z = mu + exp(logvar/2) * eps, so the sample's spread around mu follows the posterior std
    m2 = MPVAE(latent_dims=(2,))
    mu, lv = torch.zeros(20000, 2), torch.log(torch.tensor([0.25, 4.])).expand(20000, 2)
    z = m2.reparameterize(mu, lv)
    assert torch.allclose(z.std(0), torch.tensor([0.5, 2.]), rtol=0.03)

def test_output_and_save_load(tmp_path):
    torch.manual_seed(1)
    m = MPVAE(in_channels=3, latent_dims=(8, 24)).eval()
    x = torch.rand(2, 3, 64, 64)
    p = save_model(m, tmp_path/'sub'/'m.pt', epochs=3)
    assert p.exists() and not [f for f in p.parent.iterdir() if f.name.endswith('.tmp')]
    m2 = load_model(p)
    assert m2.config == m.config and m2.meta == {'epochs': 3} and not m2.training
    for a, b in zip(m.encode(x), m2.encode(x)): assert torch.equal(a, b)
    assert torch.equal(m.reconstruct(x), m2.reconstruct(x))
    torch.save({'x': 1}, tmp_path/'junk.pt')
    with pytest.raises(ValueError, match='not a model'): load_model(tmp_path/'junk.pt')
    o = m(x)
    assert isinstance(o, MPVAEOutput) and o.logits is o[0] and o.z is o[3]

# ---------------------------------------------------------------- what comes in: one clear line per mistake

from mpvae.model import check_images

def test_floats_in_0_255_fail_instead_of_training():
    "Issue #39: floats in [0, 255] trained to a NELBO of -13,589,429 (BCE with targets above 1 has no lower bound)."
    x = torch.randint(0, 256, (8, 1, 64, 64)).float()
    with pytest.raises(ValueError, match=r'up to 25\d.*divide by 255'): MPVAE()(x)
    # the same mistake through a learner fails at the first batch, not after an epoch of nonsense
    from mpvae.loader import array_dls
    from mpvae.train import mpvae_learner
    dls = array_dls(x, decode=lambda b: b.float(), valid_pct=0.25, bs=4, device='cpu')
    with pytest.raises(ValueError, match='divide by 255'): mpvae_learner(dls, precision=None, seed=0)   # refused when built

def test_channels_last_names_the_layout():
    "Issue #39: NHWC used to fail as 'tap depth 5 needs img_size divisible by 2**5' (the learner sized the net from it)."
    x = torch.rand(2, 64, 64, 3)
    with pytest.raises(ValueError, match=r'channels-last \(n, h, w, c\).*x\.permute\(0, 3, 1, 2\)'): MPVAE(in_channels=3)(x)
    with pytest.raises(ValueError, match='channels-last'): check_images(x)          # what a learner can call, no model yet
    with pytest.raises(ValueError, match='channels-last'): MPVAE()(torch.rand(2, 64, 64, 1))
    assert MPVAE(in_channels=3)(x.permute(0, 3, 1, 2)).logits.shape == (2, 3, 64, 64)   # the suggested fix works

def test_uint8_names_the_dtype():
    "Issue #39: a uint8 batch used to fail in the first conv: 'Input type (unsigned char) and bias type (float) ...'."
    x = torch.randint(0, 256, (2, 1, 64, 64), dtype=torch.uint8)
    with pytest.raises(TypeError, match=r'torch.uint8.*x\.float\(\) / 255'): MPVAE()(x)
    with pytest.raises(TypeError, match=r'torch.uint8'): MPVAE().encode(x)
    assert torch.isfinite(MPVAE()(x.float() / 255).logits).all()

@pytest.mark.parametrize('bad, err, match', [
    (torch.full((2, 1, 64, 64), float('nan')), ValueError, 'NaN or infinite'),
    (torch.full((2, 1, 64, 64), float('inf')), ValueError, 'NaN or infinite'),
    (torch.rand(2, 1, 64, 64) * 2 - 1, ValueError, 'undo the normalisation'),
    (torch.rand(2, 1, 64, 64) * 1000 + 300, ValueError, 'scale them to'),
    (torch.rand(1, 64, 64), ValueError, r'x\[None\]'),
    (torch.rand(2, 1, 64, 64).numpy(), TypeError, 'torch.as_tensor'),
    (torch.ones(2, 1, 64, 64, dtype=torch.bool), TypeError, r'x\.float\(\)'),
    (torch.rand(2, 3, 64, 64), ValueError, r'\(n, 1, 64, 64\).*in_channels'),
])
def test_other_bad_inputs(bad, err, match):
    with pytest.raises(err, match=match) as e: MPVAE()(bad)
    assert '\n' not in str(e.value)       # one line

def test_good_inputs_pass():
    m = MPVAE()
    for x in (torch.zeros(2, 1, 64, 64), torch.ones(2, 1, 64, 64), torch.rand(2, 1, 64, 64).double().float(),
              torch.rand(0, 1, 64, 64), torch.rand(2, 1, 64, 64).half().float()):
        m(x)
    check_images(torch.rand(2, 3, 32, 32)); check_images(torch.rand(2, 3, 32, 32).clamp(0, 1) * (1 + 5e-4))  # resampling slack

# ---------------------------------------------------------------- saving: file modes, the training record, the old format

import json, os
from safetensors.torch import load_file

@pytest.mark.parametrize('mask', [0o022, 0o077, 0o002])
def test_save_pretrained_files_get_the_umask_mode(tmp_path, mask):
    m = MPVAE(latent_dims=(2, 3)); m.meta = {'a': 1}
    old = os.umask(mask)
    try: m.save_pretrained(tmp_path/'m')
    finally: os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path/'m').iterdir()}
    for name in ('model.safetensors', 'config.json', 'meta.json'): assert modes[name] == 0o666 & ~mask, (name, oct(modes[name]))

def test_learners_record_survives_save_pretrained(tmp_path):
    "A learner's save_model (loss settings, images, record) leaves the record on the model: save_pretrained writes it."
    from mpvae.loader import array_dls
    from mpvae.train import mpvae_learner
    dls = array_dls(torch.rand(16, 1, 32, 32), valid_pct=0.25, bs=4, device='cpu')
    learn = mpvae_learner(dls, precision=None, seed=0, betas=[2., 1.])
    with learn.no_bar(), learn.no_logging(): learn.fit(1)
    learn.save_model(tmp_path/'m.pth', train_images=12, record={'images': 12})
    learn.model.save_pretrained(tmp_path/'hf')
    meta = json.loads((tmp_path/'hf'/'meta.json').read_text())
    assert meta['loss_config']['betas'] == [2., 1.] and meta['train_images'] == 12 and meta['record'] == {'images': 12}
    back = MPVAE.from_pretrained(tmp_path/'hf')
    assert back.meta == meta == load_model(tmp_path/'m.pth').meta
    for a, b in zip(learn.model.state_dict().values(), back.state_dict().values()): assert torch.equal(a.cpu(), b)

def test_save_pretrained_meta_argument_and_bad_meta(tmp_path):
    m = MPVAE(latent_dims=(2,))
    assert m.meta == {}
    m.save_pretrained(tmp_path/'a')
    assert not (tmp_path/'a'/'meta.json').exists()                     # nothing to record: no meta.json
    m.save_pretrained(tmp_path/'a', meta={'betas': [1, 2], 'images': 5})
    assert json.loads((tmp_path/'a'/'meta.json').read_text()) == {'betas': [1, 2], 'images': 5} == m.meta
    before = sorted(p.name for p in (tmp_path/'a').iterdir())
    with pytest.raises(TypeError, match='cannot be written as JSON'): m.save_pretrained(tmp_path/'a', meta={'x': torch.ones(1)})
    assert sorted(p.name for p in (tmp_path/'a').iterdir()) == before and m.meta == {'betas': [1, 2], 'images': 5}
    assert MPVAE.from_pretrained(tmp_path/'a').meta == m.meta          # the folder is as the last good save left it

def test_old_pth_format_still_loads(tmp_path):
    "A .pth in the format save_model has always written (built here by hand, not by save_model) loads with load_model."
    torch.manual_seed(3)
    m = MPVAE(latent_dims=(3, 9)).eval()
    state = {'format': 'mpvae-model', 'version': 1, 'config': m.config.to_dict(),
             'state_dict': {k: v.clone() for k, v in m.state_dict().items()}, 'meta': {'epochs': 2}}
    torch.save(state, tmp_path/'old.pth')
    m2 = load_model(tmp_path/'old.pth')
    assert m2.meta == {'epochs': 2} and m2.config == m.config
    x = torch.rand(2, 1, 64, 64)
    assert torch.equal(m.reconstruct(x), m2.reconstruct(x))
    save_model(m2, tmp_path/'again.pth', epochs=2)                     # and the format round-trips unchanged
    again = torch.load(tmp_path/'again.pth', weights_only=True)
    assert again.keys() == state.keys() and again['config'] == state['config'] and again['meta'] == state['meta']
