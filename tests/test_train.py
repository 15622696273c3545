"""mpvae.train: metrics, schedules, mixed precision, the NaN guard, checkpoint/resume, logs and save/load.

Runs use a small net on 32x32 toy images so the whole file stays well under a minute on one CPU thread.
"""
import csv, json, os, warnings
from pathlib import Path
import numpy as np
import pytest
import torch
from fastai.callback.core import Callback
from mpvae.loader import array_dls
from mpvae.model import MPVAE, load_model
from mpvae.loss import MPVAELoss
from mpvae.train import (mpvae_learner, Checkpoint, NonFiniteError, BetaWarmup, CapacitySchedule, ReconTracker,
                         Autocast, plot_loss_curves, load_checkpoint_model, MPVAELearner, PosteriorCollapseWarning, CollapseWatch,
                         ProgressLines)

SMALL = dict(img_size=32, latent_dims=(2, 3), taps=(3, 4), trunk_channels=(8, 8, 16), extra_channels=16, merge_channels=(16, 16))

def squares(n=160, size=32, seed=1):
    g = np.random.default_rng(seed)
    x = np.zeros((n, 1, size, size), np.uint8)
    for i in range(n):
        s = g.integers(3, size // 3); r, c = g.integers(0, size - s + 1, 2)
        x[i, 0, r:r+s, c:c+s] = 1
    return torch.from_numpy(x)

X = squares()
def dls(bs=16): return array_dls(X, decode=lambda r: r.float(), valid_pct=0.2, bs=bs, seed=3, device='cpu')   # 8 train batches

def quiet_fit(learn, n, one_cycle=False, lr=3e-3):
    with learn.no_bar(), learn.no_logging():
        if one_cycle: learn.fit_one_cycle(n, lr)
        else: learn.fit(n, lr)
    return learn

class Crash(Callback):
    def __init__(self, at): self.at = at
    def after_batch(self):
        if self.training and self.train_iter == self.at: raise KeyboardInterrupt('simulated crash')

def test_metrics_csv_and_curves(tmp_path):
    learn = quiet_fit(mpvae_learner(dls(), SMALL, betas=(1., 2.), seed=0, csv_log='h.csv', path=tmp_path), 2)
    assert isinstance(learn, MPVAELearner)
    names = list(learn.recorder.metric_names)
    assert names == ['epoch', 'train_loss', 'valid_loss', 'recon', 'kl1', 'kl2', 'nelbo', 'time']
    for tl, vl, recon, kl1, kl2, nelbo in learn.recorder.values:
        # the metrics are the loss's own terms: valid_loss = recon + beta1*kl1 + beta2*kl2, nelbo = recon + kl1 + kl2
        assert vl == pytest.approx(recon + 1*kl1 + 2*kl2, rel=1e-5)
        assert nelbo == pytest.approx(recon + kl1 + kl2, rel=1e-5)
        assert kl1 >= 0 and kl2 >= 0
    rows = list(csv.reader(open(tmp_path/'h.csv')))
    assert rows[0] == names + ['images'] and len(rows) == 3
    assert [r[-1] for r in rows[1:]] == ['128', '256']   # training images seen: 8 batches of 16 per epoch
    assert [float(v) for v in rows[2][1:7]] == [float(v) for v in learn.recorder.values[1]]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]
    for src in (learn, tmp_path/'h.csv'): assert len(plot_loss_curves(src).axes) == 2

def _run(d, crash=None, resume=False, every_iters=3, every_epochs=1, one_cycle=True, precision=None):
    tracker = ReconTracker(X[:4].float())
    learn = mpvae_learner(dls(), SMALL, betas=(1., 4.), beta_warmup=10, seed=7, precision=precision,
                          checkpoint=Checkpoint('c.pth', every_epochs, every_iters, resume),
                          csv_log='log.csv', path=d, cbs=[tracker] + ([Crash(crash)] if crash else []))
    try: quiet_fit(learn, 3, one_cycle=one_cycle)
    except KeyboardInterrupt: pass
    return learn, tracker

def _same_run(a, b, da, db):
    ta, tb = a[0], b[0]
    for (k, p), q in zip(ta.model.state_dict().items(), tb.model.state_dict().values()): assert torch.equal(p, q), k
    sa, sb = ta.opt.state_dict()['state'], tb.opt.state_dict()['state']
    for x, y in zip(sa, sb):
        for k in x:
            if isinstance(x[k], torch.Tensor): assert torch.equal(x[k], y[k]), k
    assert ta.recorder.values == tb.recorder.values
    assert [float(v) for v in ta.recorder.losses] == [float(v) for v in tb.recorder.losses]
    strip = lambda p: [r[:-1] for r in csv.reader(open(p))]   # all but the wall-clock column
    assert strip(Path(da)/'log.csv') == strip(Path(db)/'log.csv')
    assert [l for l, _ in a[1].history] == [l for l, _ in b[1].history]
    for (_, x), (_, y) in zip(a[1].history, b[1].history): assert torch.equal(x, y)

@pytest.mark.parametrize('crash,every_iters,expect_from', [(13, 3, (1, 4)),    # mid-epoch: last checkpoint at step 12
                                                           (17, None, (2, 0))])  # epoch-level checkpoints only
def test_resume_is_exact(tmp_path, crash, every_iters, expect_from):
    d1, d2 = tmp_path/'full', tmp_path/'crashed'
    full = _run(d1, every_iters=every_iters)
    crashed = _run(d2, crash=crash, every_iters=every_iters)
    assert len(crashed[0].recorder.losses) == crash - 1      # it really stopped early (Crash runs before Recorder)
    resumed = _run(d2, resume=True, every_iters=every_iters)
    ck = [c for c in resumed[0].cbs if isinstance(c, Checkpoint)][0]
    assert ck.resumed_from == expect_from
    _same_run(full, resumed, d1, d2)

def test_resume_checks_the_run(tmp_path):
    _run(tmp_path, crash=5)
    learn = mpvae_learner(dls(), SMALL, seed=7, checkpoint=Checkpoint('c.pth', every_iters=3, resume=True), path=tmp_path)
    with pytest.raises(ValueError, match='resume with the same fit call'): quiet_fit(learn, 5)
    other = dict(SMALL, latent_dims=(2, 4))
    learn = mpvae_learner(dls(), other, seed=7, checkpoint=Checkpoint('c.pth', every_iters=3, resume=True), path=tmp_path)
    with pytest.raises(ValueError, match=r'another configuration .* differs in latent_dims \(checkpoint \[2, 3\], learner \[2, 4\]\): '):
        quiet_fit(learn, 3)

def test_nan_guard_names_batch_and_term(tmp_path):
    learn = mpvae_learner(dls(), SMALL, seed=0, path=tmp_path)
    with torch.no_grad(): learn.model.enc_heads[1][-1].bias[:3].fill_(float('inf'))   # mu of path 2
    with pytest.raises(NonFiniteError) as e: quiet_fit(learn, 1)
    msg = str(e.value)
    assert 'epoch 0, training batch 0' in msg and 'kl2' in msg and 'posterior mean of path 2' in msg

    class Poison(Callback):   # a NaN in the input at the 3rd batch
        def before_batch(self):
            if self.training and self.iter == 2: self.learn.xb = (self.xb[0].clone().fill_(float('nan')),)
    learn = mpvae_learner(dls(), SMALL, seed=0, path=tmp_path, cbs=[Poison()])
    # the model refuses a NaN input itself (mpvae.model.check_images, #39), before the loss the guard would see
    with pytest.raises(ValueError, match=r'images hold 16384 NaN or infinite values'): quiet_fit(learn, 1)

    learn = mpvae_learner(dls(), SMALL, seed=0, path=tmp_path)
    learn.model.merge[0].weight.register_hook(lambda g: g * float('nan'))
    with pytest.raises(NonFiniteError, match=r'non-finite gradient at epoch 0, training batch 0.*merge\.0\.weight'): quiet_fit(learn, 1)

def test_schedules_drive_the_loss(tmp_path):
    seen = []
    class Spy(Callback):
        order = 50
        def after_loss(self):
            if self.training:
                lf = self.loss_func
                seen.append((lf.beta_weight, lf.capacity, lf.gamma, lf.last['loss'].item(), lf.last['recon'].item(), [k.item() for k in lf.last['kl']]))
    learn = mpvae_learner(dls(), SMALL, seed=0, path=tmp_path, cbs=[BetaWarmup(iters=4), Spy()])
    quiet_fit(learn, 1)
    assert [s[0] for s in seen] == [0., .25, .5, .75, 1., 1., 1., 1.]
    for w, _, _, loss, r, kl in seen: assert loss == pytest.approx(r + w*sum(kl), rel=1e-5)
    seen.clear()
    learn = mpvae_learner(dls(), SMALL, seed=0, path=tmp_path, cbs=[CapacitySchedule(c_max=[2., 8.], pct=.5, gamma=100.), Spy()])
    quiet_fit(learn, 2)
    caps = [s[1] for s in seen]
    assert caps[0] == [0., 0.] and caps[4] == [1., 4.] and caps[8:] == [[2., 8.]]*8     # linear in pct_train, then flat
    for _, c, g, loss, r, kl in seen: assert loss == pytest.approx(r + g*sum(abs(k - ci) for k, ci in zip(kl, c)), rel=1e-5)

def test_bf16_autocast_on_cpu(tmp_path):
    dtypes = []
    class Spy(Callback):
        order = 11
        def after_pred(self): dtypes.append(self.pred.logits.dtype)
    learn = mpvae_learner(dls(), SMALL, seed=0, precision='bf16', path=tmp_path, cbs=[Spy()])
    inner = []
    h = learn.model.up[0].register_forward_hook(lambda m, i, o: inner.append(o.dtype))
    quiet_fit(learn, 1)
    h.remove()
    assert set(inner) == {torch.bfloat16}          # the convolutions ran in bf16 ...
    assert set(dtypes) == {torch.float32}          # ... and the loss saw float32
    assert all(p.dtype == torch.float32 for p in learn.model.parameters())
    assert np.isfinite(learn.recorder.values[-1][1])
    with pytest.raises(ValueError, match="use precision='bf16'"): quiet_fit(mpvae_learner(dls(), SMALL, precision='fp16'), 1)
    with pytest.raises(ValueError, match="'bf16' or 'fp16'"): Autocast('int8')

def test_save_load_and_checkpoint_model(tmp_path):
    learn = quiet_fit(mpvae_learner(dls(), SMALL, betas=(1., 3.), seed=0, checkpoint='c.pth', path=tmp_path), 1)
    with learn.no_bar(): preds, targ = learn.get_preds()          # fastai's gather/concat/reorder of MPVAEOutput
    assert preds.logits.shape == targ.shape == (32, 1, 32, 32) and [m.shape for m in preds.mu] == [(32, 2), (32, 3)]
    p = learn.save_model(tmp_path/'m.pt', note='x')
    m = load_model(p)
    x = X[:5].float()
    learn.model.eval()
    for a, b in zip(learn.model.encode(x), m.encode(x)): assert torch.equal(a, b)
    assert m.meta['loss_config']['betas'] == [1., 3.] and m.meta['note'] == 'x'
    for a, b in zip(learn.model.encode(x), load_checkpoint_model(tmp_path/'c.pth').encode(x)): assert torch.equal(a, b)

def test_input_checks():
    rgb = array_dls(torch.zeros(40, 3, 32, 32, dtype=torch.uint8), decode=lambda r: r.float(), valid_pct=0.2, bs=8, device='cpu')
    assert mpvae_learner(rgb, dict(latent_dims=(4, 4), taps=(3, 4))).model.config.in_channels == 3   # read from the data
    with pytest.raises(ValueError, match='in_channels=3, img_size=32'): mpvae_learner(rgb, MPVAE(latent_dims=(4, 4)).config)
    with pytest.raises(ValueError, match='3 values but the model has 2 paths'): mpvae_learner(dls(), SMALL, betas=(1, 1, 1))
    with pytest.raises(ValueError, match='exactly one of iters'): BetaWarmup(iters=3, pct=.5)

def test_only_rank0_writes(tmp_path, monkeypatch):
    monkeypatch.setenv('RANK', '1')
    quiet_fit(mpvae_learner(dls(), SMALL, seed=0, checkpoint=Checkpoint('c.pth', every_iters=2), csv_log='h.csv', path=tmp_path), 1)
    assert list(tmp_path.iterdir()) == []


def _as_version1(st):
    "A checkpoint dict as version 1 wrote it: NumPy's random state as an array tuple, fastai's hypers as an `L`."
    from fastcore.foundation import L
    n, p = st['rng']['numpy'], st['rng']['python']
    rng = dict(st['rng'], numpy=('MT19937', n['keys'].numpy().astype(np.uint32), n['pos'], n['has_gauss'], n['gauss']),
               python=(p['version'], tuple(p['state'].tolist()), p['gauss']))
    return dict(st, version=1, rng=rng, opt=dict(st['opt'], hypers=L(st['opt']['hypers'])))


def test_version1_checkpoint_resumes_warns_and_converts(tmp_path):
    "Old checkpoints (NumPy and fastcore objects inside) still resume, with a warning naming the converter, which makes them plain."
    from mpvae.train import convert_checkpoint
    def run(d, n, resume):
        l = mpvae_learner(dls(), SMALL, seed=7, checkpoint=Checkpoint('c.pth', resume=resume), path=d, precision=None)
        return quiet_fit(l, n)
    full = run(tmp_path/'full', 2, False)
    run(tmp_path/'old', 1, False)
    ck = tmp_path/'old'/'c.pth'
    st = torch.load(ck, weights_only=True)                       # version 2: plain tensors and containers
    assert st['version'] == 2 and torch.serialization.get_unsafe_globals_in_checkpoint(ck) == []
    torch.save(_as_version1(st), ck)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(ck)   # now it holds NumPy / fastcore objects
    with pytest.warns(UserWarning, match=r"version-1 checkpoint.*convert_checkpoint"):
        resumed = run(tmp_path/'old', 2, True)
    for (k, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()): assert torch.equal(a, b), k
    # convert: the same state, readable by the restricted unpickler with nothing allowed beyond it
    torch.save(_as_version1(st), ck)
    convert_checkpoint(ck)
    new = torch.load(ck, weights_only=True)
    assert new['version'] == 2 and torch.equal(new['rng']['numpy']['keys'], st['rng']['numpy']['keys'])
    assert new['opt']['hypers'] == st['opt']['hypers'] and torch.equal(new['rng']['torch'], st['rng']['torch'])


def test_checkpoint_holds_only_callbacks_with_their_own_state(tmp_path):
    "fastai callbacks forward unknown attributes to the learner: `state_dict` must be the callback's own, not the model's."
    l = quiet_fit(mpvae_learner(dls(), SMALL, seed=7, checkpoint='c.pth', csv_log='log.csv', path=tmp_path, precision=None), 1)
    assert sorted(torch.load(tmp_path/'c.pth', weights_only=True)['cbs']) == ['CSVLog']


# issue #39: the data is checked before the model is sized from it
def _dls_of(x, decode): return array_dls(x, decode=decode, valid_pct=0.2, bs=8, device='cpu')

def test_channels_last_data_gets_the_layout_error_not_the_tap_depth_one():
    x = torch.rand(40, 32, 32, 3)             # NHWC: the learner used to build a net for img_size=3
    with pytest.raises(ValueError, match=r'channels-last \(n, h, w, c\).*x\.permute\(0, 3, 1, 2\)') as e:
        mpvae_learner(_dls_of(x, None))           # sized from the data, as the paper's net
    assert 'tap depth' not in str(e.value)
    with pytest.raises(ValueError, match='channels-last'):   # not square, channels known from the config
        mpvae_learner(_dls_of(torch.rand(40, 48, 32, 3), None), dict(latent_dims=(2,), in_channels=3))

def test_floats_in_0_255_are_refused_before_any_training_step():
    x = torch.randint(0, 256, (40, 1, 32, 32), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r'up to 25\d.*divide by 255'): mpvae_learner(_dls_of(x, lambda r: r.float()), SMALL)
    learn = mpvae_learner(_dls_of(x, lambda r: r.float() / 255), SMALL, seed=0)   # the fix the message names
    assert learn.model.config.img_size == 32

def test_uint8_batch_gets_the_dtype_message():
    x = torch.randint(0, 2, (40, 1, 32, 32), dtype=torch.uint8)
    with pytest.raises(TypeError, match=r'images are torch\.uint8.*x\.float\(\) / 255'):
        mpvae_learner(_dls_of(x, lambda r: r), SMALL)


# issue #39: saving, one story
def test_save_model_relative_path_is_under_learn_path(tmp_path, monkeypatch):
    run, elsewhere = tmp_path/'run', tmp_path/'cwd'
    elsewhere.mkdir(); monkeypatch.chdir(elsewhere)
    learn = quiet_fit(mpvae_learner(dls(), SMALL, betas=(1., 2.), seed=0, path=run, csv_log='h.csv'), 1)
    p = learn.save_model('m.pth')
    assert p == run/'m.pth' and p.exists() and (run/'h.csv').exists() and list(elsewhere.iterdir()) == []
    m = load_model(run/'m.pth')
    x = X[:4].float()
    for a, b in zip(learn.model.eval().encode(x), m.encode(x)): assert torch.equal(a, b)
    assert learn.save_model(tmp_path/'abs.pth') == tmp_path/'abs.pth' and (tmp_path/'abs.pth').exists()   # unchanged

def test_model_meta_after_fit_and_through_save_pretrained(tmp_path):
    learn = mpvae_learner(dls(), SMALL, betas=(1., 2.), seed=3, path=tmp_path, precision=None)
    assert learn.model.meta == {}
    quiet_fit(learn, 2)
    meta = learn.model.meta
    assert meta['train_images'] == 2 * 8 * 16            # 2 epochs of 8 batches of 16 images, one process
    assert meta['betas'] == [1., 2.] and meta['loss_config']['betas'] == [1., 2.] and meta['seed'] == 3
    assert meta['precision']['precision'] == 'fp32'
    learn.model.save_pretrained(tmp_path/'folder')
    assert json.loads((tmp_path/'folder'/'meta.json').read_text()) == meta
    back = MPVAE.from_pretrained(tmp_path/'folder')
    assert back.meta == meta
    x = X[:4].float()
    for a, b in zip(learn.model.eval().encode(x), back.encode(x)): assert torch.equal(a, b)
    assert load_model(learn.save_model('m.pth', note='x')).meta == dict(meta, note='x')   # the .pth keeps it too


# issue #39: posterior collapse, said out loud
def _collapse_fit(betas, n, tmp_path=None):
    out = tmp_path/'lines.txt' if tmp_path else None
    cbs = [ProgressLines('m', out=out)] if out else None
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always')
        learn = quiet_fit(mpvae_learner(dls(), SMALL, betas=betas, seed=0, precision=None, cbs=cbs), n)
    return learn, [str(w.message) for w in ws if issubclass(w.category, PosteriorCollapseWarning)], out

def test_collapsed_path_is_named_once_per_fit(tmp_path):
    learn, msgs, out = _collapse_fit((1., 500.), 2, tmp_path)   # beta 500 on path 2: it carries nothing
    kl1, kl2 = learn.recorder.values[-1][3:5]
    assert kl2 < 0.01 < kl1
    assert len(msgs) == 1, msgs                                  # one warning, not one per epoch
    assert msgs[0].startswith("path z2 carries < 0.01 nats: posterior collapse (try: more training, a smaller beta "
                              "for that path, or a beta warm-up)")
    assert out.read_text().splitlines()[-1].endswith(' | collapse: z2 < 0.01 nats')
    with warnings.catch_warnings(record=True) as ws:             # a second fit: its own warning
        warnings.simplefilter('always'); quiet_fit(learn, 1)
    assert [issubclass(w.category, PosteriorCollapseWarning) for w in ws].count(True) == 1

def test_healthy_paths_give_no_collapse_warning(tmp_path):
    learn, msgs, out = _collapse_fit((1., 1.), 2, tmp_path)
    assert min(learn.recorder.values[-1][3:5]) > 0.1 and msgs == []
    assert 'collapse' not in out.read_text()
    learn = mpvae_learner(dls(), SMALL, betas=(1., 500.), seed=0, precision=None)
    learn.remove_cb(CollapseWatch)                     # a guard is dropped the fastai way
    with warnings.catch_warnings(record=True) as ws:
        warnings.simplefilter('always'); quiet_fit(learn, 1)
    assert not [w for w in ws if issubclass(w.category, PosteriorCollapseWarning)]   # turned off

