"""The table path end to end against answers known without the package (#50): representations whose probe accuracy
follows from their construction are fed through the stages every table uses (`probe_pair` -> `table_rows` ->
`table_results`), and the table, its majority levels, its verdict and its paired lead must come out as constructed.

On dSprites' factor grid (classes drawn uniformly, as the dataset holds them):
* the true factors one-hot are linearly separable: 100% on every label;
* pure noise can only be answered with the majority class: the majority level, computed here with numpy from the
  probe's own splits, within a tolerance the split size justifies;
* one factor's one-hot (shape) beside noise: 100% on shape, the majority level on the other four.
"""
import numpy as np
import pytest
from mpvae.factors import DSPRITES_FACTORS
from mpvae.stages import probe_pair, table_rows, table_results, DSPRITES_LABELS, DSPRITES_FEATS

POOL, TRAIN, VALID = 2400, 1600, 800

def one_hot(c, k): return np.eye(k, dtype=np.float32)[c]

@pytest.fixture(scope='module')
def table():
    classes = DSPRITES_FACTORS.sample_classes(POOL, np.random.default_rng(0))          # (n, 6), colour first
    names = list(DSPRITES_FACTORS.names)
    y = np.stack([classes[:, names.index(l)] for l in DSPRITES_LABELS], 1)
    sizes = [DSPRITES_FACTORS.sizes[names.index(l)] for l in DSPRITES_LABELS]
    allhot = np.concatenate([one_hot(y[:, j], k) for j, k in enumerate(sizes)], 1)
    results = []
    for seed in (0, 1):
        noise = np.random.default_rng(10 + seed).normal(size=(POOL, 12)).astype(np.float32)
        feats = {'baseline': np.c_[noise[:, :9], one_hot(y[:, 0], sizes[0])],   # shape only, beside noise
                 'z1': noise[:, :3], 'z2': allhot, 'z1+z2': np.c_[noise[:, :3], allhot]}
        results.append(probe_pair(feats, y, DSPRITES_LABELS, seed, probe='logreg_cv', n_splits=2,
                                  train_size=TRAIN, valid_size=VALID))
    rows = table_rows(results, DSPRITES_FEATS)
    return y, results, table_results('dsprites', rows, results, params=dict(rep_seeds=[0, 1]))

def majority_levels(y, splits):
    "Per label: the most common class of each split's training rows, its share of the validation rows; mean over splits."
    return np.array([np.mean([np.mean(y[va, j] == np.bincount(y[tr, j]).argmax()) for tr, va in splits])
                     for j in range(y.shape[1])]) * 100

def test_one_hot_factors_score_100_on_every_label(table):
    _, _, res = table
    for key in ('z2', 'z1+z2'):
        for l in DSPRITES_LABELS: assert res['rows'][key]['acc'][l]['mean'] == pytest.approx(100, abs=0.5), (key, l)

def test_noise_scores_the_majority_level(table):
    y, results, res = table
    maj = majority_levels(y, results[0].splits)
    # the table's majority column is the same numpy computation
    assert [res['majority'][l] * 100 for l in DSPRITES_LABELS] == pytest.approx(list(maj), abs=1e-6)
    # a probe that finds nothing falls back to about the majority class: within 3 sd of a share of 800 rows
    sd = np.sqrt(maj / 100 * (1 - maj / 100) / VALID) * 100
    for j, l in enumerate(DSPRITES_LABELS):
        assert abs(res['rows']['z1']['acc'][l]['mean'] - maj[j]) <= max(3 * sd[j], 1.0), (l, res['rows']['z1']['acc'][l], maj[j])

def test_one_factor_alone_scores_on_its_label_only(table):
    y, results, res = table
    maj = majority_levels(y, results[0].splits)
    b = res['rows']['baseline']['acc']
    assert b['shape']['mean'] == pytest.approx(100, abs=0.5)
    for j, l in enumerate(DSPRITES_LABELS[1:], 1): assert abs(b[l]['mean'] - maj[j]) < 4, (l, b[l], maj[j])

def test_the_verdict_and_the_lead_come_out_as_constructed(table):
    y, results, res = table
    maj = majority_levels(y, results[0].splits)
    # z1+z2 reads every label perfectly; the baseline reads shape only: the lead is the mean shortfall on the other four
    expected = np.mean(100 - np.r_[100, maj[1:]])
    o = res['ordering']
    assert (o['hi'], o['lo']) == ('z1+z2', 'baseline') and o['holds'] and o['verdict'] == 'holds'
    assert o['diff'] == pytest.approx(expected, abs=1.5)
