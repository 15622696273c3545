"""Probes at several training sizes (mpvae.probe's nested sizes, mpvae.scarce's curves), checked against answers
known without the code under test: nesting by set inclusion, fold counts by class counts, accuracies of codes whose
Bayes rate is known, and the curve statistics recomputed by hand from hand-made results.
"""
import math
import numpy as np
import pytest
from scipy.stats import norm, t as student

from mpvae.probe import run_probe, probe_splits, nested_splits, splits_for_size, size_folds, ProbeResult
from mpvae.scarce import (probe_curve, curve_rows, sample_efficiency, paired_sizes, curve_markdown, labels_markdown,
                          setting_record)


@pytest.fixture(scope='module')
def pool():
    "A 4-class label held by a 2-D code (class means 2 sd apart: Bayes rate Phi(2)^2), and pure noise."
    rng = np.random.default_rng(0); n = 4_000
    y = rng.integers(0, 4, n)
    centres = 2*np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]])
    return {'code': centres[y] + rng.normal(size=(n, 2)), 'noise': rng.normal(size=(n, 3))}, y


# ---------------------------------------------------------------- splits
def test_sizes_are_nested_with_the_same_validation_rows():
    ns = nested_splits(1_000, [300, 10, 100], 200, n_splits=splits_for_size)
    assert list(ns) == [10, 100, 300]
    for small, big in ((10, 100), (100, 300)):
        assert len(ns[small]) >= len(ns[big])
        for (t, v), (tb, vb) in zip(ns[small], ns[big]):
            assert len(t) == small and set(t) <= set(tb)           # a subset of the larger size's rows
            assert np.array_equal(v, vb) and not set(t) & set(v)   # the same validation rows, disjoint from training
    # the largest size is the single-size protocol's splits
    assert all(np.array_equal(a, c) and np.array_equal(b, d)
               for (a, b), (c, d) in zip(ns[300], probe_splits(1_000, 300, 200, len(ns[300]))))


def test_more_splits_at_small_sizes():
    assert [splits_for_size(k) for k in (10, 100, 1_000, 10_000)] == [50, 50, 16, 5]
    assert all(splits_for_size(k) >= splits_for_size(2*k) for k in (10, 50, 300, 2_000, 9_000))
    assert splits_for_size(10_000, n_splits=3) == 3 and splits_for_size(10, most=20) == 20


def test_fixed_C_probe_at_the_largest_size_equals_the_single_size_protocol(pool):
    "With no folds involved (kind='logreg'), the list's largest size is exactly run_probe(train_size=int)."
    feats, y = pool
    several = run_probe(feats, y, train_size=[50, 600], valid_size=500, n_splits=3, n_seeds=2)
    one = run_probe(feats, y, train_size=600, valid_size=500, n_splits=3, n_seeds=2)
    assert np.array_equal(several[600].acc, one.acc) and np.array_equal(several[600].balanced, one.balanced)
    assert several[50].params['nested'] and several[50].params['sizes'] == [50, 600]


# ---------------------------------------------------------------- folds
def test_fold_count_falls_back_where_classes_are_absent():
    "10 labels of a 40-class label: classes of one row, some absent: 2 folds, reported as not stratified everywhere."
    rng = np.random.default_rng(1); n = 3_000
    y = np.stack([rng.integers(0, 40, n), rng.integers(0, 2, n)], 1)
    x = {'f': rng.normal(size=(n, 2))}
    res = run_probe(x, y, ['many', 'two'], train_size=[10, 400], valid_size=500, n_splits={10: 6, 400: 2},
                    n_seeds=1, kind='logreg_cv')
    tr10 = [t for t, _ in res[10].splits]
    assert max(len(np.unique(y[t, 0])) for t in tr10) <= 10 < 40              # most classes absent
    f = res[10].info['folds']['many']
    assert f == dict(folds=2, smallest_class=1, every_class_in_every_fold=False, fewer_folds=True)
    # 400 rows of 2 classes: 5 stratified folds, every class in every fold
    assert res[400].info['folds']['two'] == dict(folds=5, smallest_class=min(np.bincount(y[t, 1]).min() for t, _ in res[400].splits),
                                                 every_class_in_every_fold=True, fewer_folds=False)
    assert 'stratified' in res[10].params['cv_folds'] and res[10].params['n_splits_rule'] == {'10': 6, '400': 2}
    assert res[10].acc.shape == (1, 2, 6, 1) and np.isfinite(res[10].acc).all()


def test_size_folds_stratify_by_class():
    y = np.repeat([0, 1, 2], [12, 8, 4])
    folds, rec = size_folds(y, np.arange(24)[None], cv=5)
    assert rec == dict(folds=4, smallest_class=4, every_class_in_every_fold=True, fewer_folds=True)
    for _, v in folds[0]: assert np.bincount(y[v], minlength=3).tolist() == [3, 2, 1]


# ---------------------------------------------------------------- known accuracies
def test_a_code_of_the_label_is_read_from_100_labels_and_noise_never(pool):
    feats, y = pool
    res = probe_curve(feats, y[:, None], ['label'], sizes=[10, 100, 1_000], valid_size=1_000,
                      n_splits={10: 20, 100: 10, 1_000: 3})
    bayes = norm.cdf(2)**2                                                     # 0.9545
    assert abs(res[100].stats('code')['mean'] - bayes) < 0.04
    assert abs(res[1_000].stats('code')['mean'] - bayes) < 0.02
    for r in res.values(): assert abs(r.stats('noise')['mean'] - 0.25) < 0.04   # chance, 4 classes
    assert res[10].stats('code')['mean'] > 0.5                                  # few labels: above chance already
    assert res[10].stats('code')['std_between_splits'] > res[1_000].stats('code')['std_between_splits']


def test_bad_sizes_are_refused(pool):
    feats, y = pool
    with pytest.raises(ValueError, match='distinct'): run_probe(feats, y, train_size=[10, 10], valid_size=100)
    with pytest.raises(ValueError, match='>= 2'): run_probe(feats, y, train_size=[1, 10], valid_size=100, n_seeds=1, kind='logreg_cv')
    with pytest.raises(ValueError, match='n_splits must be an int'): run_probe(feats, y, train_size=10, n_splits={10: 2}, valid_size=100)
    with pytest.raises(ValueError, match='encode more'): run_probe(feats, y, train_size=[10, 3_900], valid_size=200)


# ---------------------------------------------------------------- curves, efficiency, paired test
def _result(acc_by_feature:dict, n_splits:int) -> ProbeResult:
    "A hand-made result: every split of feature f scores acc_by_feature[f] (one label of 4 classes)."
    fs = list(acc_by_feature)
    acc = np.array([[[[acc_by_feature[f]]]*n_splits] for f in fs])                 # (features, 1 label, splits, 1 seed)
    return ProbeResult(acc, fs, {f: 2 for f in fs}, ['label'], [4], [[0.3]*n_splits],
                       dict(n_splits=n_splits, train_size=0), balanced=acc)


def test_curve_statistics_by_hand():
    # seed s: baseline 0.40/0.80 at 100/10,000 labels; z1+z2 0.50+0.01s/0.82
    runs = {s: {100: _result({'baseline': 0.40, 'z1+z2': 0.50 + 0.01*s}, 10),
                10_000: _result({'baseline': 0.80, 'z1+z2': 0.82}, 5)} for s in range(3)}
    c = curve_rows(runs)
    assert c['sizes'] == [100, 10_000] and c['n_splits'] == {100: 10, 10_000: 5}
    assert math.isclose(c['rows']['z1+z2'][100]['mean'], 51.0) and math.isclose(c['rows']['z1+z2'][100]['std_seeds'], 1.0)
    assert math.isclose(c['majority'][100], 30.0) and math.isclose(c['chance'], 25.0)
    eff = sample_efficiency(c)
    assert math.isclose(eff['baseline']['mean'], 0.5) and eff['baseline']['std_seeds'] < 1e-12
    assert np.allclose(eff['z1+z2']['per_seed'], [0.50/0.82, 0.51/0.82, 0.52/0.82])
    p = paired_sizes(c)                                                         # z1+z2 - baseline, per seed: 10, 11, 12
    assert p[100]['hi'] == 'z1+z2' and np.allclose(p[100]['per_seed'], [10, 11, 12])
    se = 1/math.sqrt(3)
    assert math.isclose(p[100]['diff'], 11) and math.isclose(p[100]['se'], se) and math.isclose(p[100]['t'], 11/se)
    assert math.isclose(p[100]['p'], 2*student.sf(11/se, 2))
    md = curve_markdown(c)
    assert '| z1+z2 | 51.00 ± 1.00 | 82.00 ± 0.00 |' in md and '+10.00, +11.00, +12.00' in md
    rec = setting_record(runs, setting='hand')
    assert rec['paired']['acc']['mean'][100]['diff'] == p[100]['diff'] and rec['seeds'] == [0, 1, 2]
    assert math.isclose(rec['efficiency']['acc']['label']['baseline']['mean'], 0.5)
    assert '| label | z1+z2 | 51.0 ± 1.0 | 82.0 ± 0.0 | 0.62 | 30.0 |' in labels_markdown(rec['curves']['acc'])


def test_curves_refuse_mismatched_seeds():
    runs = {0: {100: _result({'a': .5}, 2)}, 1: {10: _result({'a': .5}, 2)}}
    with pytest.raises(ValueError, match='has sizes'): curve_rows(runs)
    with pytest.raises(ValueError, match='not in the curve'): sample_efficiency(curve_rows({0: runs[0]}), small=10)
