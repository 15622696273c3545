"""Disentanglement metrics on synthetic codes whose answers are known without running the metric.

Ground truth: `ToyGroundTruth` with factor sizes (1, 3, 4, 5, 6) (the size-1 factor plays dSprites' `color`).
Representations:
* perfect: code dimension i = class of factor i (the four usable factors);
* rotated: the standardised factors mixed by the 4x4 Hadamard rotation (every dimension = +-1/2 of every factor),
  so no dimension is tied to one factor and every factor is spread evenly over all dimensions;
* noise: Gaussian codes independent of the factors.
Expectations come from these constructions (see each test), never from a previous run of the code.
"""
import numpy as np
import pytest
from mpvae.disentangle import (mig, dci, sap, dci_scores, factor_vae_score, beta_vae_score, evaluate_paths, metric_settings,
                               sample_codes, tabulate_codes, kl_per_dim, plot_kl_bars, plot_mi_heatmaps, ToyGroundTruth,
                               histogram_discretize, mi_matrix, factor_entropy, path_views, encoder_fn)

SIZES = [1, 3, 4, 5, 6]
USABLE = np.array(SIZES[1:])
TOY = ToyGroundTruth(SIZES, ['color', 'shape', 'scale', 'posX', 'posY'])
HADAMARD = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]]) / 2.
assert np.allclose(HADAMARD @ HADAMARD.T, np.eye(4))

def perfect(im): return im[:, 1:]
def standardised(im): return (im[:, 1:] - (USABLE - 1) / 2) / np.sqrt((USABLE**2 - 1) / 12)  # uniform-class mean and std
def rotated(im): return standardised(im) @ HADAMARD
def noise_fn(seed=5):
    g = np.random.default_rng(seed)
    return lambda im: g.normal(size=(len(im), 4))

N_TR, N_TE = 2000, 1000
SMALL = {'mig': dict(n=N_TR), 'dci': dict(n_train=N_TR, n_test=N_TE), 'sap': dict(n_train=N_TR, n_test=N_TE),
         'factor_vae': dict(n_train=400, n_eval=400, n_var=2000), 'beta_vae': dict(n_train=400, n_eval=400)}

@pytest.fixture(scope='module')
def scores():
    "All five metrics for the three representations (computed once, ~15 s)."
    out = {}
    for name, rep in [('perfect', perfect), ('rotated', rotated), ('noise', noise_fn())]:
        codes, classes = sample_codes(TOY, rep, N_TR + N_TE, seed=1)
        nm = TOY.factors.names
        out[name] = dict(mig=mig(codes, classes, n=N_TR, factor_names=nm), dci=dci(codes, classes, N_TR, N_TE), sap=sap(codes, classes, N_TR, N_TE),
                         fvae=factor_vae_score(TOY, rep, **SMALL['factor_vae']), bvae=beta_vae_score(TOY, rep, **SMALL['beta_vae']))
    return out

def test_perfect_codes_score_near_the_top(scores):
    s = scores['perfect']
    # every class in its own histogram bin (sizes <= 20): own dimension carries H(factor), the others ~0
    assert s['mig']['mig'] > 0.97
    assert s['mig']['factors'] == ['shape', 'scale', 'posX', 'posY']   # constant `color` dropped
    # each factor's trees need only its own dimension: diagonal importance, perfect prediction
    assert s['dci']['disentanglement'] > 0.95 and s['dci']['completeness'] > 0.95 and s['dci']['informativeness'] > 0.99
    assert np.array_equal(s['dci']['importance'].argmax(0), np.arange(4))
    # 1-D linear classifier on the own dim beats every other dim (which are independent of the factor)
    assert np.array_equal(s['sap']['score_matrix'].argmax(0), np.arange(4)) and s['sap']['sap'] > 0.3
    # the fixed factor's dimension has zero variance in its batch: every vote right
    assert s['fvae']['eval_accuracy'] == 1.0 and s['fvae']['num_active_dims'] == 4
    assert s['fvae']['classifier'] == {0: 'shape', 1: 'scale', 2: 'posX', 3: 'posY'}
    # mean |z_a - z_b| is exactly 0 on the fixed factor's dimension: linearly separable labels
    assert s['bvae']['eval_accuracy'] > 0.97

def test_rotation_scores_lower(scores):
    p, r = scores['perfect'], scores['rotated']
    # every dimension depends equally on all four factors: no dimension is much more informative than the next
    assert r['mig']['mig'] < 0.1 < p['mig']['mig'] - 0.5
    assert r['dci']['disentanglement'] < 0.3 < p['dci']['disentanglement'] - 0.5
    assert r['sap']['sap'] < p['sap']['sap'] / 3
    # fixing any factor lowers every dimension's variance by the same share: the argmin is a coin toss (chance 1/4)
    assert r['fvae']['eval_accuracy'] < 0.45
    # the code is still an invertible function of the factors: informative, just not disentangled
    assert r['dci']['informativeness'] > 0.9

def test_noise_scores_near_zero(scores):
    n = scores['noise']
    assert n['mig']['mig'] < 0.03 and n['sap']['sap'] < 0.03
    # trees fit noise on the training set but predict at chance (majority-class frequency) on the test set
    assert n['dci']['informativeness'] < n['dci']['chance'] + 0.05
    assert n['dci']['informativeness_train'] > n['dci']['informativeness'] + 0.2
    # chance for the BetaVAE / FactorVAE classifiers is 1/4 (four usable factors)
    assert abs(n['bvae']['eval_accuracy'] - 0.25) < 0.08 and n['bvae']['chance'] == 0.25
    assert abs(n['fvae']['eval_accuracy'] - 0.25) < 0.12

def test_duplicated_dimension_lowers_mig():
    rng = np.random.default_rng(0)
    y = rng.integers(0, [3, 4, 5], size=(3000, 3))
    base, dup = mig(y.astype(float), y), mig(np.c_[y, y[:, 1]].astype(float), y)
    # two identical best dimensions for factor 1: its gap is exactly 0, the others are unchanged
    assert dup['per_factor']['factor1'] == 0.0 and base['per_factor']['factor1'] > 0.97
    assert dup['mig'] == pytest.approx(base['mig'] - base['per_factor']['factor1'] / 3, abs=1e-9)

def test_mig_pieces_closed_forms():
    y = np.repeat(np.arange(4), 25)[:, None]                    # uniform over 4 classes
    assert factor_entropy(y)[0] == pytest.approx(np.log(4))
    assert mi_matrix(y.astype(float), y)[0, 0] == pytest.approx(np.log(4))
    d = histogram_discretize(np.linspace(0, 1, 101)[:, None], 20)
    assert d.min() == 1 and d.max() == 20 and len(np.unique(d)) == 20   # disentanglement_lib's bins: 1..20

def test_dci_formulas():
    assert dci_scores(np.eye(4)) == pytest.approx((1, 1), abs=1e-6)
    assert dci_scores(np.ones((4, 4))) == pytest.approx((0, 0), abs=1e-6)
    # one dimension used for both factors: complete (each factor in one dim) but not disentangled
    assert dci_scores(np.array([[1., 1.], [0, 0]])) == pytest.approx((0, 1), abs=1e-6)

def test_dci_hgb_importance_matches_sklearn_gbt():
    "The fast estimator's importance matrix is close to disentanglement_lib's GradientBoostingClassifier one."
    rng = np.random.default_rng(0)
    y = rng.integers(0, [3, 2], size=(900, 2))
    f = (y - y.mean(0)) / y.std(0)
    x = np.c_[f[:, 0] + 0.3 * rng.normal(size=900), f[:, 1] + f[:, 0] + 0.3 * rng.normal(size=900), rng.normal(size=900)]
    h, g = dci(x, y, 600, 300, 'hgb'), dci(x, y, 600, 300, 'gbt')
    assert np.abs(h['importance'] - g['importance']).max() < 0.12
    assert abs(h['informativeness'] - g['informativeness']) < 0.05

def test_inactive_dimension_is_pruned_by_factor_vae():
    # a constant dim (std 0) and a near-constant one (std 0.01 < threshold 0.05) never vote; the score is untouched
    g = np.random.default_rng(0)
    rep = lambda im: np.c_[im[:, 1:], np.zeros(len(im)), 0.01 * g.normal(size=len(im))]
    r = factor_vae_score(TOY, rep, n_train=300, n_eval=300, n_var=1000)
    assert r['num_active_dims'] == 4 and r['active_dims'] == [0, 1, 2, 3]
    assert r['votes'][:, 4:].sum() == 0 and r['eval_accuracy'] == 1.0
    # with the threshold at 0 the noisy dim is active (std 0.01 > 0) and wins votes, the constant one still cannot
    # (its variance cannot be normalised)
    r0 = factor_vae_score(TOY, rep, n_train=300, n_eval=300, n_var=1000, prune_threshold=0.)
    assert r0['num_active_dims'] == 5 and r0['votes'][:, 4].sum() == 0
    # all dims inactive: score 0 as in disentanglement_lib
    r = factor_vae_score(TOY, lambda im: np.zeros((len(im), 2)), n_train=10, n_eval=10, n_var=100)
    assert r['eval_accuracy'] == 0. and r['chance'] == 0.25

def test_single_value_factor_never_held_fixed():
    r = factor_vae_score(TOY, perfect, n_train=200, n_eval=100, n_var=500)
    assert r['votes'][0].sum() == 0 and r['factors'] == ['shape', 'scale', 'posX', 'posY']

def test_bad_input_errors():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=(100, 2)); x = rng.normal(size=(100, 2))
    with pytest.raises(ValueError, match='non-finite'): mig(np.where(np.arange(100)[:, None] == 3, np.nan, x), y)
    with pytest.raises(ValueError, match='row for row'): dci(x, y[:90], 50, 30)
    with pytest.raises(ValueError, match='n_train'): sap(x, y, 100, 50)
    with pytest.raises(ValueError, match='not factor values'): mig(x, y + 0.5)
    with pytest.raises(ValueError, match='single value'): mig(x, np.zeros((100, 2), int))
    with pytest.raises(ValueError, match='non-finite'): factor_vae_score(TOY, lambda im: im * np.nan, 10, 10, n_var=50)
    with pytest.raises(ValueError, match=r'\(n, d\)'): beta_vae_score(TOY, lambda im: im[:3], 10, 10)
    with pytest.raises(ValueError, match='single class'): factor_vae_score(ToyGroundTruth([1, 1]), perfect, 10, 10, n_var=50)
    with pytest.raises(TypeError, match='evaluate_paths'): mig([x, x], y)
    # a factor with one value is dropped (documented), the rest measured
    r = mig(x, np.c_[np.zeros(100, int), y], factor_names=['color', 'a', 'b'])
    assert r['factors'] == ['a', 'b']

def test_evaluate_paths_per_path_views():
    g = np.random.default_rng(3)
    rep = lambda im: [im[:, 1:3], g.normal(size=(len(im), 3))]     # z1: two factors perfectly; z2: noise
    settings = {**SMALL, 'dci': dict(n_train=1000, n_test=500), 'sap': dict(n_train=1000, n_test=500), 'mig': dict(n=1000)}
    res = evaluate_paths(data=TOY, representation_fn=rep, settings=settings)
    assert list(res.index) == ['z1', 'z2', 'z1+z2'] and res['dims'].tolist() == [2, 3, 5]
    for col in ['mig', 'dci_disentanglement', 'sap', 'factor_vae', 'beta_vae', 'dci_informativeness']:
        assert res.loc['z1', col] > res.loc['z2', col] + 0.1, col
    assert res.loc['z2', 'mig'] < 0.03
    assert set(res.attrs['settings'].index) == {'mig', 'dci', 'sap', 'factor_vae', 'beta_vae'}
    # codes/classes given, no data: the three code-based metrics only
    codes, classes = sample_codes(TOY, rep, 1500)
    r2 = evaluate_paths(codes, classes, path_names=['a', 'b'], settings=settings)
    assert list(r2.index) == ['a', 'b', 'a+b'] and 'factor_vae' not in r2.columns and 'mig' in r2.columns
    with pytest.raises(ValueError, match='need `data`'): evaluate_paths(codes, classes, metrics=['factor_vae'])

def test_path_views_and_settings():
    v = path_views([3, 9])
    assert list(v) == ['z1', 'z2', 'z1+z2'] and v['z2'].tolist() == list(range(3, 12)) and len(v['z1+z2']) == 12
    assert list(path_views([12])) == ['z']
    s = metric_settings()
    assert 'n_bins=20' in s.loc['mig', 'settings'] and 'n_train=10000' in s.loc['dci', 'settings']
    assert 'C=0.01' in s.loc['sap', 'settings'] and 'batch_size=64' in s.loc['beta_vae', 'settings']

def test_tabulated_codes_give_the_same_scores():
    rep = lambda im: [im[:, 1:3] * 2, np.sin(im[:, 3:])]
    tab = tabulate_codes(TOY, rep)
    assert tab.codes.shape == (int(np.prod(SIZES)), 4)
    a = beta_vae_score(tab, tab.representation_fn, 200, 200); b = beta_vae_score(TOY, rep, 200, 200)
    assert a['eval_accuracy'] == pytest.approx(b['eval_accuracy'])

def test_kl_per_dim_closed_form_and_figures():
    rng = np.random.default_rng(0)
    mu = np.c_[np.full(200, 2.), np.zeros(200)]; lv = np.c_[np.zeros(200), np.zeros(200)]
    assert kl_per_dim(mu, lv) == pytest.approx([2.0, 0.0])      # 0.5 * mu^2 with unit variance; prior itself: 0
    assert kl_per_dim(np.zeros((5, 1)), np.full((5, 1), np.log(4)))[0] == pytest.approx(0.5 * (4 - np.log(4) - 1))
    with pytest.raises(ValueError, match='same shape'): kl_per_dim(mu, lv[:, :1])
    fig = plot_kl_bars([mu[:, :1], mu[:, 1:]], [lv[:, :1], lv[:, 1:]])
    assert len(fig.axes[0].patches) == 2
    codes, classes = sample_codes(TOY, lambda im: [im[:, 1:3], im[:, 3:]], 500)
    fig = plot_mi_heatmaps(codes, classes, TOY.factors.names, n=None)
    assert len(fig.axes) == 3
    import matplotlib.pyplot as plt; plt.close('all')

def test_encoder_fn_wraps_a_multi_path_model():
    import torch
    class M(torch.nn.Module):
        def __init__(self): super().__init__(); self.w = torch.nn.Parameter(torch.ones(1))
        def encode(self, x): return [x[:, :2] * self.w, x[:, 2:] * 2]
    f = encoder_fn(M(), bs=7)
    out = f(np.arange(40, dtype=np.float32).reshape(10, 4))
    assert [o.shape for o in out] == [(10, 2), (10, 2)] and out[1][0].tolist() == [4., 6.]

def _partly_mixed():
    "Each dimension = its own factor + the next one + noise: scores strictly between chance and 1."
    g = np.random.default_rng(11)
    M = np.eye(4) + np.eye(4, k=1)
    return lambda im: standardised(im) @ M + 0.7 * g.normal(size=(len(im), 4))

def test_pool_approximates_exact_sampling():
    "Batches drawn from a pool of encoded points give the exact-sampling scores up to sampling noise (~0.015-0.02 sd each)."
    rep = _partly_mixed()
    pool = tabulate_codes(TOY, rep, n=20_000, seed=2)
    assert len(pool) == 20_000 and pool.codes.shape == (20_000, 4)
    kw = dict(n_train=1000, n_eval=1000)
    ex_f, po_f = factor_vae_score(TOY, rep, n_var=2000, **kw), factor_vae_score(pool, pool.representation_fn, n_var=2000, **kw)
    ex_b, po_b = beta_vae_score(TOY, rep, **kw), beta_vae_score(pool, pool.representation_fn, **kw)
    assert 0.3 < ex_f['eval_accuracy'] < 0.999 and 0.3 < ex_b['eval_accuracy'] < 0.999   # not at a bound: a real comparison
    assert abs(ex_f['eval_accuracy'] - po_f['eval_accuracy']) < 0.06
    assert abs(ex_b['eval_accuracy'] - po_b['eval_accuracy']) < 0.06
    with pytest.raises(TypeError, match='cannot encode arbitrary classes'): pool.images_from_classes([[0, 0, 0, 0, 0]])

def test_evaluate_paths_tabulated_is_exact():
    rep = lambda im: [im[:, 1:3], np.sin(im[:, 3:])]
    kw = dict(data=TOY, representation_fn=rep, metrics=['mig', 'factor_vae', 'beta_vae'], settings=SMALL)
    a, b = evaluate_paths(**kw), evaluate_paths(**kw, tabulate=True)
    assert np.allclose(a.values, b.values) and b.attrs['sampling'].startswith('exact')
    c = evaluate_paths(**kw, tabulate=5000)
    assert c.attrs['sampling'].startswith('APPROXIMATION') and list(c.index) == ['z1', 'z2', 'z1+z2']

def test_single_code_dimension_has_no_runner_up():
    "Documented handling: with one code dimension the second-best dimension counts as 0 (MIG, SAP); DCI's C is 1."
    rng = np.random.default_rng(0)
    y = rng.integers(0, [3, 4], size=(1500, 2)); x = y[:, :1].astype(float)
    r = mig(x, y)
    assert r['per_factor']['factor0'] > 0.97 and r['per_factor']['factor1'] < 0.02   # dim holds factor 0, nothing of factor 1
    s = sap(x, y, 1000, 500)
    assert s['sap'] == pytest.approx(s['score_matrix'][0].mean())
    d = dci(x, y, 1000, 500)
    assert d['completeness'] == pytest.approx(1.0) and d['informativeness'] < 1
