"""The probe protocol (mpvae.probe) on synthetic features whose answers are known in closed form.

Small pools (a few thousand rows) keep the whole file well under a minute on 2 shared cores.
"""
import json, math
import numpy as np
import pytest
import torch
from torch import nn
from scipy.stats import norm
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from mpvae.probe import (encode_dataset, feature_sets, probe_splits, run_probe, ProbeResult, plot_probe, grid_Cs, kfold)
from mpvae.logreg import _lbfgs, _lossgrad, lbfgs_logreg as _lbfgs_logreg     # the solver's module (05b_logreg)

SMALL = dict(train_size=800, valid_size=400)


@pytest.fixture(scope='module')
def synth():
    "Three labels (2, 5, 12 classes) and feature sets with known answers."
    rng = np.random.default_rng(0); n = 2500
    y = np.stack([rng.integers(0, c, n) for c in (2, 5, 12)], 1)
    feats = {
        'onehot': np.concatenate([np.eye(c)[y[:, j]] for j, c in enumerate((2, 5, 12))], 1),
        'noise': rng.normal(size=(n, 4)),
        'first': np.concatenate([y[:, :1] + 0.3*rng.normal(size=(n, 1)), rng.normal(size=(n, 3))], 1),   # label 0 in one dim
    }
    res = run_probe(feats, y, ['a', 'b', 'c'], **SMALL)
    return feats, y, res


# ---------------------------------------------------------------- known answers
def test_linear_code_is_perfect(synth):
    _, _, res = synth
    for l in 'abc': assert res.stats('onehot', l)['mean'] > 0.995


def test_noise_is_at_chance_and_majority(synth):
    _, _, res = synth
    for l, c in zip('abc', (2, 5, 12)):
        st = res.stats('noise', l)
        assert res.chance[l] == pytest.approx(1/c)
        # a probe on pure noise cannot beat the majority vote by more than its sampling noise (400 validation rows)
        se = math.sqrt(0.25/400)
        assert abs(st['mean'] - res.majority[l]) < 0.04 + 3*se
        assert st['std'] > 0                                # noisy task: the runs differ


def test_label_in_one_dim_reaches_bayes_rate_and_beats_noise(synth):
    _, _, res = synth
    a = res.stats('first', 'a')['mean']
    assert a == pytest.approx(norm.cdf(0.5/0.3), abs=0.025)   # classes 1 apart, noise std 0.3
    assert a > res.stats('noise', 'a')['mean'] + 0.3
    assert res.stats('first', 'b')['mean'] < 0.3               # the other labels are not in it


def test_majority_on_imbalanced_label():
    rng = np.random.default_rng(1); n = 2000
    y = (rng.random(n) < 0.1).astype(np.int64)                 # 90% class 0
    res = run_probe({'noise': rng.normal(size=(n, 3))}, y, **SMALL, n_splits=3, n_seeds=2)
    assert res.chance['label'] == 0.5
    assert res.majority['label'] == pytest.approx(0.9, abs=0.03)
    # the majority vote of each split, computed here independently
    for k, (tr, va) in enumerate(res.splits):
        maj = np.bincount(y[tr]).argmax()
        assert res.majority_per_split[0, k] == pytest.approx(np.mean(y[va] == maj))
    assert res.stats('noise', 'label')['mean'] == pytest.approx(0.9, abs=0.03)


# ---------------------------------------------------------------- protocol structure
def test_splits_disjoint_sized_distinct():
    sp = probe_splits(1000, 600, 300, n_splits=5, seed=3)
    assert len(sp) == 5
    for tr, va in sp:
        assert len(tr) == 600 and len(va) == 300
        assert len(np.unique(tr)) == 600 and len(np.unique(va)) == 300
        assert len(np.intersect1d(tr, va)) == 0
        assert tr.min() >= 0 and max(tr.max(), va.max()) < 1000
    assert len({tuple(tr) for tr, _ in sp}) == 5
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(sp, probe_splits(1000, 600, 300, 5, seed=3)))
    assert not np.array_equal(sp[0][0], probe_splits(1000, 600, 300, 5, seed=4)[0][0])


def test_25_runs(synth):
    feats, y, res = synth
    assert res.acc.shape == (3, 3, 5, 5)
    assert len(res.runs('noise', 'c')) == 25 and len(res.runs('noise')) == 25
    assert len(res.splits) == 5 and len({tuple(t) for t, _ in res.splits}) == 5
    assert all(len(t) == 800 and len(v) == 400 and not np.intersect1d(t, v).size for t, v in res.splits)
    # accuracies are fractions of 400 validation rows
    assert np.allclose(res.acc*400, np.round(res.acc*400))
    # the 'mean' label averages the labels within each run
    assert np.allclose(res.runs('first'), res.acc[2].mean(0).reshape(-1))


def test_linear_probe_seeds_only_move_the_start(synth):
    _, _, res = synth
    st = res.stats('noise', 'c')
    # a convex problem: the 5 seeds of a split reach the same optimum, the spread is between splits
    assert st['std_within_split'] <= 0.2*st['std_between_splits'] + 1e-3
    assert st['std_between_splits'] > 0


def test_deterministic_and_independent_of_batching(synth):
    feats, y, res = synth
    again = run_probe({'first': feats['first']}, y[:, [2, 0]], ['c', 'a'], **SMALL)
    # the same label probed alone (with another label batched beside it) gives the same runs
    assert np.abs(again.acc[0, 1] - res.acc[2, 0]).max() <= 1/400 + 1e-9
    assert np.abs(again.acc[0, 0] - res.acc[2, 2]).max() <= 1/400 + 1e-9


# ---------------------------------------------------------------- agreement with scikit-learn
def _sk_acc(x, y, tr, va, l2=1e-4):
    sc = StandardScaler().fit(x[tr])
    m = LogisticRegression(C=1/(l2*len(tr)), max_iter=10_000, tol=1e-8).fit(sc.transform(x[tr]), y[tr])
    return m.score(sc.transform(x[va]), y[va])


def test_agrees_with_sklearn():
    rng = np.random.default_rng(2); n = 3000
    y = np.stack([rng.integers(0, c, n) for c in (3, 20)], 1)
    # weak, nonlinear evidence: the optimum of the linear probe is far from 0% and 100%, so disagreements would show
    x = np.concatenate([np.cos(y[:, 1:2]/20*2*np.pi) + 0.5*rng.normal(size=(n, 1)), y[:, :1] + rng.normal(size=(n, 1)),
                        y[:, 1:2]/7 + rng.normal(size=(n, 1)), rng.normal(size=(n, 3))], 1)
    res = run_probe({'x': x}, y, ['y3', 'y20'], train_size=1500, valid_size=1000, n_splits=3, n_seeds=2, l2=1e-3)
    for j in range(2):
        sk = np.array([_sk_acc(x, y[:, j], tr, va, l2=1e-3) for tr, va in res.splits])
        ours = res.acc[0, j]                                   # (3 splits, 2 seeds)
        assert np.abs(ours - sk[:, None]).max() <= 0.01, (j, ours, sk)


def _sk_balanced(x, y, tr, va, l2=1e-4):
    from sklearn.metrics import balanced_accuracy_score
    sc = StandardScaler().fit(x[tr])
    m = LogisticRegression(C=1/(l2*len(tr)), max_iter=10_000, tol=1e-8).fit(sc.transform(x[tr]), y[tr])
    return balanced_accuracy_score(y[va], m.predict(sc.transform(x[va])))


def test_balanced_accuracy_agrees_with_sklearn():
    "Balanced accuracy (mean class recall) of the fixed-C probe against scikit-learn's balanced_accuracy_score, on an imbalanced label."
    rng = np.random.default_rng(3); n = 3000
    y = np.stack([(rng.random(n) < 0.15).astype(np.int64), rng.choice(4, n, p=[0.55, 0.25, 0.15, 0.05])], 1)
    x = np.concatenate([y[:, :1] + 0.8*rng.normal(size=(n, 1)), y[:, 1:2] + 1.2*rng.normal(size=(n, 1)),
                        rng.normal(size=(n, 2))], 1)
    res = run_probe({'x': x}, y, ['rare', 'four'], train_size=1500, valid_size=1000, n_splits=3, n_seeds=1, l2=1e-3)
    for j in range(2):
        sk = np.array([_sk_balanced(x, y[:, j], tr, va, l2=1e-3) for tr, va in res.splits])
        assert np.abs(res.balanced[0, j, :, 0] - sk).max() <= 0.01, (j, res.balanced[0, j], sk)
        # imbalance: accuracy flatters the probe, balanced accuracy does not
        assert res.stats('x', ['rare', 'four'][j])['mean'] > res.stats('x', ['rare', 'four'][j], 'balanced')['mean']


@pytest.mark.parametrize('kind', ['logreg_cv', 'boost', 'mlp'])
def test_balanced_accuracy_of_every_kind(kind):
    "Every kind measures balanced accuracy: a code holding the label gives 1, noise gives the majority answer's 1/2."
    rng = np.random.default_rng(4); n = 900
    y = (rng.random(n) < 0.2).astype(np.int64)
    feats = {'label': np.stack([y + 0.01*rng.normal(size=n), rng.normal(size=n)], 1), 'noise': rng.normal(size=(n, 2))}
    kw = dict(n_seeds=1) if kind == 'logreg_cv' else dict(n_seeds=2, epochs=60) if kind == 'mlp' else dict(n_seeds=2)
    res = run_probe(feats, y, train_size=500, valid_size=300, n_splits=2, kind=kind, **kw)
    assert res.stats('label', 'label', 'balanced')['mean'] > 0.97
    assert abs(res.stats('noise', 'label', 'balanced')['mean'] - 0.5) < 0.08
    assert res.stats('noise', 'label')['mean'] == pytest.approx(0.8, abs=0.06)   # accuracy: the majority's 80%


def test_lossgrad_matches_autograd():
    "Loss and gradient of every problem, with per-problem penalties and row weights (0 = a padding row), against autograd."
    g = torch.Generator().manual_seed(0)
    S, n, D, P, C = 2, 37, 4, 3, 5
    X = torch.randn(S, n, D, generator=g); X[..., -1] = 1
    Y = torch.randint(0, C, (S, n, P), generator=g)
    W = torch.randn(S, D, P, C, generator=g, requires_grad=True)
    l2 = torch.rand(S, P, generator=g)
    rw = torch.rand(S, n, generator=g); rw[:, -3:] = 0; rw = rw/rw.sum(1, keepdim=True)
    f, grad = _lossgrad(X, Y, W.detach(), l2, rw, chunk=10)  # several row chunks
    ref = 0
    for s in range(S):
        for p in range(P):
            w = W[s, :, p]
            ce = nn.functional.cross_entropy(X[s] @ w, Y[s, :, p], reduction='none')
            one = (ce*rw[s]).sum() + 0.5*l2[s, p]*(w[:-1]**2).sum()
            assert f[s, p].item() == pytest.approx(one.item(), rel=1e-5)
            ref = ref + one
    ref.backward()
    assert torch.allclose(grad, W.grad, atol=1e-5)


def test_batch_shrinking_changes_nothing():
    "Problems that leave the batch early (strong penalty) do not change the ones that stay, nor are changed by them."
    rng = np.random.default_rng(4); n, D = 400, 4
    x = rng.normal(size=(2, n, D-1)).astype(np.float32)
    X = torch.cat([torch.as_tensor(x), torch.ones(2, n, 1)], 2)
    Y = torch.as_tensor(np.stack([(3*x @ rng.normal(size=(D-1, 3)) + rng.normal(size=(2, n, 3))).argmax(-1) for _ in range(4)], -1))
    l2 = torch.tensor([[1e-1, 1e-2, 1e-4, 1e-6]]*2)            # from a few iterations to hundreds
    W, its, st = _lbfgs(X, Y, torch.zeros(2, D, 4, 3), l2, max_iter=2000, tol=1e-5)
    assert (its[:, 0] < its[:, 3]).all()                        # the batch did shrink
    for s in range(2):
        for p in range(4):
            w1, _, _ = _lbfgs(X[s:s+1], Y[s:s+1, :, p:p+1], torch.zeros(1, D, 1, 3), l2[s:s+1, p:p+1], max_iter=2000, tol=1e-5)
            assert torch.allclose(W[s, :, p], w1[0, :, 0], atol=1e-4), (s, p)


def test_logreg_cv_agrees_with_sklearn_on_unequal_folds():
    "1,003 training rows: folds of 201 and 200 rows (a padding row in the shorter ones); same accuracy, same or next C."
    import warnings
    from sklearn.linear_model import LogisticRegressionCV
    rng = np.random.default_rng(5); n = 2000
    y = np.stack([rng.integers(0, c, n) for c in (3, 8)], 1)
    x = np.concatenate([y[:, :1] + rng.normal(size=(n, 1)), np.cos(y[:, 1:2]) + 0.7*rng.normal(size=(n, 1)),
                        y[:, 1:2]/4 + rng.normal(size=(n, 1)), rng.normal(size=(n, 2))], 1)
    res = run_probe({'x': x}, y, ['y3', 'y8'], train_size=1003, valid_size=800, n_splits=2, n_seeds=1, kind='logreg_cv')
    assert res.params['n_seeds'] == 1 and res.acc.shape == (1, 2, 2, 1) and res.info['not_converged'] == []
    grid = grid_Cs(10)
    for k, (tr, va) in enumerate(res.splits):
        sc = StandardScaler().fit(x[tr])
        for j, l in enumerate(['y3', 'y8']):
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                sk = LogisticRegressionCV(Cs=10, cv=kfold(1003, 5, seed=0), max_iter=10_000).fit(sc.transform(x[tr]), y[tr, j])
            assert abs(res.acc[0, j, k, 0] - sk.score(sc.transform(x[va]), y[va, j])) <= 0.003, (k, l)
            c = res.info['cv']['x'][l]['C'][k]
            assert abs(int(np.argmin(abs(grid - c))) - int(np.argmin(abs(grid - sk.C_[0])))) <= 1, (k, l, c, sk.C_)


def test_fixed_C_is_sklearns_C():
    "C=1 at 10,000 rows is the old default l2=1e-4; at 800 rows it is l2 = 1/800."
    rng = np.random.default_rng(6); x = rng.normal(size=(1500, 3)); y = (x[:, 0] > 0).astype(int)
    a = run_probe({'x': x}, y, C=1.0, n_splits=1, n_seeds=1, **SMALL)
    b = run_probe({'x': x}, y, l2=1/800, n_splits=1, n_seeds=1, **SMALL)
    assert np.array_equal(a.acc, b.acc) and a.params['sklearn_C'] == pytest.approx(1.0)


def test_boost_reads_what_a_linear_probe_cannot_and_its_seed_matters():
    rng = np.random.default_rng(7); n = 2000
    x2 = rng.integers(0, 2, (n, 2)); yx = x2[:, 0] ^ x2[:, 1]
    r = run_probe({'xor': x2 + 0.1*rng.normal(size=(n, 2))}, yx, train_size=1000, valid_size=500, n_splits=1, n_seeds=2, kind='boost')
    assert r.stats('xor')['mean'] > 0.95
    noisy = run_probe({'n': rng.normal(size=(n, 3))}, rng.integers(0, 4, n), train_size=1000, valid_size=500, n_splits=1,
                      n_seeds=3, kind='boost')
    assert len(set(noisy.acc[0, 0, 0].tolist())) > 1           # early stopping holds out other rows per seed


def test_lbfgs_reaches_sklearn_optimum():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3)).astype(np.float32); y = (x @ rng.normal(size=(3, 4)) + rng.normal(size=(300, 4))).argmax(1)
    X = torch.cat([torch.as_tensor(x), torch.ones(300, 1)], 1)[None]
    W, it, conv = _lbfgs_logreg(X, torch.as_tensor(y)[None, :, None], torch.zeros(1, 4, 1, 1, 4), l2=1e-2, tol=1e-6, max_iter=500)
    sk = LogisticRegression(C=1/(1e-2*300), tol=1e-10, max_iter=10_000).fit(x, y)
    ours = W[0, :3, 0, 0].T.numpy()
    assert bool(conv.all())
    np.testing.assert_allclose(ours - ours.mean(0), sk.coef_ - sk.coef_.mean(0), atol=2e-3)


# ---------------------------------------------------------------- the MLP probe
def test_mlp_solves_xor_and_its_seeds_matter():
    rng = np.random.default_rng(4); n = 1500
    b = rng.integers(0, 2, (n, 2)); y = b[:, 0] ^ b[:, 1]
    f = {'xor': b + 0.1*rng.normal(size=(n, 2))}
    lin = run_probe(f, y, train_size=600, valid_size=300, n_splits=2, n_seeds=2)
    mlp = run_probe(f, y, train_size=600, valid_size=300, n_splits=2, n_seeds=3, kind='mlp', hidden=16, epochs=15, lr=1e-2)
    assert lin.stats('xor')['mean'] < 0.65
    assert mlp.stats('xor')['mean'] > 0.95
    assert mlp.params['kind'] == 'mlp' and mlp.params['hidden'] == 16
    hard = run_probe({'noise': rng.normal(size=(n, 3))}, rng.integers(0, 3, n), train_size=600, valid_size=300,
                     n_splits=1, n_seeds=3, kind='mlp', hidden=8, epochs=3)
    assert len(set(hard.runs('noise').tolist())) > 1          # different seeds, different MLPs


# ---------------------------------------------------------------- results
def test_summary_and_json_round_trip(synth, tmp_path):
    _, _, res = synth
    s = res.summary()
    assert list(s.index) == ['onehot', 'noise', 'first', 'chance', 'majority']
    assert list(s.columns) == [(l, st) for l in ['a', 'b', 'c', 'mean'] for st in ('mean', 'std')]
    assert s.loc['chance', ('c', 'mean')] == pytest.approx(100/12)
    assert s.loc['chance', ('mean', 'mean')] == pytest.approx(100*np.mean([1/2, 1/5, 1/12]))
    assert s.loc['noise', ('b', 'mean')] == pytest.approx(100*res.acc[1, 1].mean())
    assert s.loc['noise', ('b', 'std')] == pytest.approx(100*res.acc[1, 1].std(ddof=1))
    assert '±' in res.summary(fmt=True).loc['noise', 'b']
    d = json.loads(json.dumps(res.to_dict()))                  # plain JSON
    assert d['params']['train_size'] == 800 and d['params']['n_seeds'] == 5 and d['params']['kind'] == 'logreg'
    assert d['labels']['b']['n_classes'] == 5 and d['labels']['b']['chance'] == pytest.approx(0.2)
    assert len(d['acc']['noise']['c']['runs']) == 5 and len(d['acc']['noise']['c']['runs'][0]) == 5
    p = res.save(tmp_path/'sub'/'probe.json')
    r2 = ProbeResult.load(p)
    np.testing.assert_allclose(r2.acc, res.acc)
    assert r2.majority == pytest.approx(res.majority)
    assert [f.name for f in p.parent.iterdir()] == ['probe.json']   # written atomically, no temp left


def test_plot(synth):
    import matplotlib; matplotlib.use('Agg')
    _, _, res = synth
    ax = plot_probe(res)
    assert len(ax.patches) == 3*4                              # 3 feature sets x (3 labels + mean)
    assert len(ax.containers) >= 3
    import matplotlib.pyplot as plt; plt.close('all')


# ---------------------------------------------------------------- bad input
def test_bad_input(synth):
    feats, y, _ = synth
    with pytest.raises(ValueError, match='same examples'):
        run_probe({'z': feats['noise'][:-1]}, y, **SMALL)
    with pytest.raises(ValueError, match='same examples'):
        run_probe({'z': feats['noise'], 'w': feats['first'][:100]}, y, **SMALL)
    with pytest.raises(ValueError, match='encode more examples'):
        run_probe(feats, y, train_size=2000, valid_size=600)
    bad = feats['noise'].copy(); bad[7, 1] = np.nan
    with pytest.raises(ValueError, match=r"'z' contain 1 NaN"):
        run_probe({'z': bad}, y, **SMALL)
    with pytest.raises(TypeError, match='integer classes'):
        run_probe(feats, y.astype(float), **SMALL)
    with pytest.raises(ValueError, match='label_names'):
        run_probe(feats, y, ['a', 'b'], **SMALL)
    with pytest.raises(ValueError, match="kind must be"):
        run_probe(feats, y, kind='svm', **SMALL)
    with pytest.raises(ValueError, match="threads must be"):
        run_probe(feats, y, threads=0, **SMALL)


def test_threads_are_restored():
    before = torch.get_num_threads()
    rng = np.random.default_rng(5)
    r = run_probe({'x': rng.normal(size=(300, 2))}, rng.integers(0, 3, 300), train_size=100, valid_size=50,
                  n_splits=2, n_seeds=2, threads=1)
    assert torch.get_num_threads() == before and r.params['threads'] == 1
    r = run_probe({'x': rng.normal(size=(300, 2))}, rng.integers(0, 3, 300), train_size=100, valid_size=50,
                  n_splits=2, n_seeds=2, threads=None)
    assert torch.get_num_threads() == before and r.params['threads'] is None


# ---------------------------------------------------------------- encoding
class LinearPaths(nn.Module):
    "Stand-in for MPVAE: path k is a fixed linear map of the flattened image; dropout shows whether eval mode is on."
    def __init__(self, n_in, dims=(3, 9)):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.maps = nn.ParameterList([nn.Parameter(torch.randn(n_in, d, generator=g)) for d in dims])
        self.drop = nn.Dropout(0.5)
        self.calls = 0
    def encode(self, x):
        self.calls += 1
        assert not torch.is_grad_enabled()
        return [self.drop(x.flatten(1)) @ m for m in self.maps]


def test_encode_dataset():
    imgs = torch.rand(50, 1, 4, 4); m = LinearPaths(16).train()
    codes = encode_dataset(m, imgs, bs=8, progress=False)
    assert [c.shape for c in codes] == [(50, 3), (50, 9)] and codes[0].dtype == np.float32
    for c, w in zip(codes, m.maps): np.testing.assert_allclose(c, (imgs.flatten(1) @ w).detach().numpy(), rtol=1e-5, atol=1e-5)
    assert m.training and m.calls == 7                          # 50 rows in batches of 8; train mode restored
    idx = np.array([9, 3, 49, 0])
    sub = encode_dataset(m, lambda i: imgs[i], idx=idx, bs=3, progress=False)
    np.testing.assert_allclose(sub[1], codes[1][idx], rtol=1e-5, atol=1e-5)
    fs = feature_sets(codes)
    assert list(fs) == ['z1', 'z2', 'z1+z2'] and fs['z1+z2'].shape == (50, 12)
    assert list(feature_sets(codes[:1])) == ['z']
    single = encode_dataset(type('One', (nn.Module,), {'encode': lambda self, x: x.flatten(1)[:, :2]})(), imgs, progress=False)
    assert len(single) == 1 and single[0].shape == (50, 2)


def test_encode_dataset_bad_input():
    imgs = torch.rand(10, 1, 4, 4); m = LinearPaths(16)
    with pytest.raises(ValueError, match='pass idx'):
        encode_dataset(m, lambda i: imgs[i])
    with pytest.raises(TypeError, match='float images'):
        encode_dataset(m, (imgs*255).byte())
    class Wrong(nn.Module):
        def encode(self, x): return [x.flatten(1)[:1]]
    with pytest.raises(ValueError, match='one row per image'):
        encode_dataset(Wrong(), imgs, progress=False)
    with pytest.raises(TypeError, match='no `encode`'):
        encode_dataset(nn.Linear(2, 2), imgs)


def test_encode_dataset_with_mpvae():
    "The real model: encode_dataset gives its posterior means, per path, in eval mode."
    from mpvae.model import MPVAE, MPVAEConfig
    torch.manual_seed(0)
    m = MPVAE(MPVAEConfig(latent_dims=(3, 9))).train()
    x = (torch.rand(10, 1, 64, 64) < 0.2).float()
    codes = encode_dataset(m, lambda i: x[torch.as_tensor(i)], idx=np.arange(10), bs=4, progress=False)
    m.eval()
    with torch.no_grad(): mus = m.encode_params(x)[0]
    assert [c.shape for c in codes] == [(10, 3), (10, 9)]
    for c, mu in zip(codes, mus): np.testing.assert_allclose(c, mu.numpy(), rtol=1e-4, atol=1e-5)
    assert list(feature_sets(codes)) == ['z1', 'z2', 'z1+z2']
