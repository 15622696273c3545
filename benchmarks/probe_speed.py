#!/usr/bin/env python
"""Time of the whole dSprites probe protocol (mpvae.probe.run_probe) and its agreement with scikit-learn.

The protocol of Table 2: 5 labels with dSprites' class counts (shape 3, scale 6, orientation 40, posX 32, posY 32),
4 feature sets (z1: 3 dims, z2: 9, z1+z2: 12, a 12-dim baseline), 5 splits x 5 seeds, 10,000 training and 5,000
validation examples per split: 500 classifiers. Budget: 2 minutes on the 2-core CPU.

Features are synthetic stand-ins shaped like a VAE's posterior means (a noisy tanh of the factor values mixed by a
fixed random matrix), so the probes face dSprites-like problems: weak, partly nonlinear evidence for many classes.
Encoding is not timed (it is the model's cost, not the probe's).

Also reported, with `--sklearn N`: N of the same fits done one at a time by scikit-learn's LogisticRegression (lbfgs,
C = 1/(l2 * train_size), the same standardised splits): the time per fit, extrapolated to 500, and the per-run
accuracy differences.

    python benchmarks/probe_speed.py --repeats 3 --threads 1 2 --json probe_speed.json
    python benchmarks/probe_speed.py --kinds logreg mlp --repeats 1
    python benchmarks/probe_speed.py --real --kinds logreg_cv --threads 1 2 --repeats 1 --sklearn 0 --cv-sklearn

`--real` probes the posterior means of the shipped lr 1e-4 models of seed 0 (`mpvae.pretrained`) on the tables'
20,000-image pool instead of synthetic features. `--cv-sklearn` refits split 0 of `z1+z2`, label by label, with
scikit-learn's `LogisticRegressionCV(Cs=10)` given the same folds, and prints both accuracies, both Cs and both times.

The machine may be shared: the load average before and after each run is printed beside its time. On an
oversubscribed machine one torch thread can be much faster than two (threads spin-wait on each other);
run_probe uses one by default.
"""
from __future__ import annotations
import argparse, datetime, os, platform, statistics, sys, time
from pathlib import Path
import numpy as np
import torch

from mpvae.probe import run_probe, feature_sets
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, loadavg, write_json  # noqa: E402

SIZES = [3, 6, 40, 32, 32]
NAMES = ['shape', 'scale', 'orientation', 'posX', 'posY']
BUDGET_S = 120


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--repeats', type=int, default=3, help='timed repeats per setting; the median is reported (default 3)')
    p.add_argument('--threads', type=int, nargs='+', default=[1, 2], help='torch thread counts to time (default 1 2)')
    p.add_argument('--kinds', nargs='+', default=['logreg'], choices=['logreg', 'logreg_cv', 'boost', 'mlp'])
    p.add_argument('--real', action='store_true', help='the shipped lr 1e-4 models of seed 0, encoded, instead of synthetic features')
    p.add_argument('--cv-sklearn', action='store_true', help='compare logreg_cv with LogisticRegressionCV on split 0 of z1+z2')
    p.add_argument('--pool', type=int, default=20_000, help='encoded examples in the pool (default 20000)')
    p.add_argument('--train', type=int, default=10_000); p.add_argument('--valid', type=int, default=5_000)
    p.add_argument('--n-splits', type=int, default=5); p.add_argument('--n-seeds', type=int, default=5)
    p.add_argument('--sklearn', type=int, default=10, help='scikit-learn fits to time and compare (0: none; default 10)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='write all results to this JSON file')
    a = p.parse_args(argv)
    if a.repeats < 1 or min(a.threads) < 1: p.error('--repeats and --threads must be >= 1')
    if a.train + a.valid > a.pool: p.error('--train + --valid must not exceed --pool')
    return a


def make_features(n, seed=0):
    "dSprites-shaped labels (n, 5) and feature sets z1 (3), z2 (9), z1+z2 (12), baseline (12)."
    rng = np.random.default_rng(seed)
    y = np.stack([rng.integers(0, c, n) for c in SIZES], 1)
    v = (y + 0.5)/np.array(SIZES) - 0.5                                     # factor values in (-0.5, 0.5)
    ang = 2*np.pi*v[:, 2:3]
    f = np.concatenate([v[:, :2], np.cos(ang), np.sin(ang), v[:, 3:]], 1)  # 6 continuous factor features
    def code(d, w, noise):
        return np.tanh(3*f @ (rng.normal(size=(6, d))*w[:, None])) + noise*rng.normal(size=(n, d))
    z1 = code(3, np.array([1, 1, .3, .3, .2, .2]), 0.5)                      # shallow path: mostly shape/scale
    z2 = code(9, np.array([.5, .5, .6, .6, 1, 1]), 0.3)                      # deep path: mostly position
    base = code(12, np.ones(6), 0.35)
    return y, {**feature_sets([z1.astype(np.float32), z2.astype(np.float32)]), 'baseline': base.astype(np.float32)}


def real_features(n):
    "dSprites labels (n, 5) and the posterior means of the shipped lr 1e-4 models (seed 0) on the tables' pool."
    from mpvae.dsprites import load_dsprites
    from mpvae.probe import encode_dataset
    from mpvae.pretrained import load_pretrained
    ds = load_dsprites(progress=False)
    pool = np.sort(np.random.default_rng(12345).choice(len(ds), size=n, replace=False))
    y = np.stack([ds.labels(l)[pool] for l in NAMES], 1)
    enc = lambda name: encode_dataset(load_pretrained(name, 0), ds.images, pool, progress=False)
    return y, {**feature_sets(enc('dsprites_mpvae_lr1e-4')), 'baseline': np.concatenate(enc('dsprites_baseline_lr1e-4'), 1)}


def cv_sklearn_compare(feats, y, res, feature='z1+z2'):
    "Split 0 of `feature`, label by label: our logreg_cv against LogisticRegressionCV(Cs=10) on the same folds."
    import warnings
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.preprocessing import StandardScaler
    from mpvae.probe import kfold, grid_Cs
    tr, va = res.splits[0]; x = feats[feature]; sc = StandardScaler().fit(x[tr])
    grid, rows = grid_Cs(10), []
    for j, l in enumerate(NAMES):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)
            m = LogisticRegressionCV(Cs=10, cv=kfold(len(tr), 5, seed=res.params['split_seed']), max_iter=5000).fit(sc.transform(x[tr]), y[tr, j])
        sec = time.perf_counter() - t
        ours, c = 100*res.acc[res.features.index(feature), j, 0, 0], res.info['cv'][feature][l]['C'][0]
        sk = 100*m.score(sc.transform(x[va]), y[va, j])
        steps = abs(int(np.argmin(abs(grid - c))) - int(np.argmin(abs(grid - m.C_[0]))))
        rows.append(dict(label=l, ours=ours, sklearn=sk, C_ours=c, C_sklearn=float(m.C_[0]), grid_steps=steps, sklearn_s=sec))
        print(f"  {l:12s} ours {ours:6.2f} (C {c:.3g})  sklearn {sk:6.2f} (C {m.C_[0]:.3g}, {sec:.1f} s)  diff {ours - sk:+.2f}, "
              f"{steps} grid step(s) apart", flush=True)
    return rows


def sklearn_compare(feats, y, res, n_fits, l2):
    "Refit `n_fits` of res's runs (seed 0 of each split) with sklearn; time per fit and accuracy differences (points)."
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    cases = [(f, j, k) for k in range(len(res.splits)) for j in range(len(NAMES)) for f in res.features]
    rng = np.random.default_rng(0)
    pick = [cases[i] for i in sorted(rng.choice(len(cases), min(n_fits, len(cases)), replace=False))]
    diffs, secs, rows = [], [], []
    for f, j, k in pick:
        tr, va = res.splits[k]; x = feats[f]
        t = time.perf_counter()
        sc = StandardScaler().fit(x[tr])
        m = LogisticRegression(C=1/(l2*len(tr)), max_iter=5000, tol=1e-6).fit(sc.transform(x[tr]), y[tr, j])
        secs.append(time.perf_counter() - t)
        sk = 100*m.score(sc.transform(x[va]), y[va, j]); ours = 100*res.acc[res.features.index(f), j, k, 0]
        diffs.append(ours - sk); rows.append(dict(feature=f, label=NAMES[j], split=k, ours=ours, sklearn=sk, seconds=secs[-1]))
    d = np.abs(diffs)
    return dict(n_fits=len(pick), seconds_per_fit_median=statistics.median(secs),
                extrapolated_500_fits_s=500*statistics.median(secs),
                abs_diff_points_max=float(d.max()), abs_diff_points_mean=float(d.mean()), fits=rows)


def main(argv=None):
    a = parse_args(argv)
    y, feats = real_features(a.pool) if a.real else make_features(a.pool, a.seed)
    kw = dict(train_size=a.train, valid_size=a.valid, n_splits=a.n_splits, device=a.device)
    n_clf = len(feats)*len(NAMES)*a.n_splits*a.n_seeds
    print(f"probe protocol: {len(feats)} feature sets {[f'{k}:{v.shape[1]}' for k, v in feats.items()]} x {len(NAMES)} labels x "
          f"{a.n_splits} splits x {a.n_seeds} seeds = {n_clf} classifiers; train {a.train}, valid {a.valid}, pool {a.pool}")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, device {a.device}; "
          f"load average now {loadavg()} (a shared machine inflates every time below)")
    out = dict(machine=dict(date=datetime.datetime.now().isoformat(timespec='seconds'), cpu=cpu_model(), cores=os.cpu_count(),
                            device=a.device, versions=dict(torch=torch.__version__, numpy=np.__version__, python=platform.python_version())),
               settings=vars(a), budget_s=BUDGET_S, results={})
    res = res_cv = None
    for kind in a.kinds:
        for th in a.threads:
            times, loads = [], []
            for r in range(a.repeats):
                l0 = loadavg(); t = time.perf_counter()
                res_k = run_probe(feats, y, NAMES, kind=kind, threads=th, n_seeds=1 if kind == 'logreg_cv' else a.n_seeds, **kw)
                times.append(time.perf_counter() - t); loads.append((l0, loadavg()))
                print(f"  {kind:6s} threads={th} repeat {r}: {times[-1]:7.1f} s   load {l0} -> {loads[-1][1]}", flush=True)
            med = statistics.median(times)
            out['results'][f'{kind}/threads={th}'] = dict(seconds=times, median_s=med, loadavg=loads, within_budget=med < BUDGET_S)
            print(f"{kind:6s} threads={th}: median {med:.1f} s over {a.repeats} (budget {BUDGET_S} s: "
                  f"{'within' if med < BUDGET_S else 'OVER'})", flush=True)
            if kind == 'logreg': res = res_k
            out['results'][f'{kind}/threads={th}']['solver'] = res_k.info.get('solver') or res_k.info.get('cv')
            if kind == 'logreg_cv': res_cv = res_k
        out['results'][f'{kind}/summary'] = res_k.summary().round(3).to_dict(orient='split')
        print(res_k.summary(fmt=True).to_string())
    if a.sklearn and res is not None:
        cmp = sklearn_compare(feats, y, res, a.sklearn, res.params['l2'])
        out['sklearn'] = cmp
        print(f"sklearn LogisticRegression, {cmp['n_fits']} fits one at a time: median {cmp['seconds_per_fit_median']:.2f} s per fit "
              f"-> ~{cmp['extrapolated_500_fits_s']:.0f} s for 500; accuracy ours - sklearn per run: max |diff| "
              f"{cmp['abs_diff_points_max']:.2f} points, mean |diff| {cmp['abs_diff_points_mean']:.3f}")
    if a.cv_sklearn and 'logreg_cv' in a.kinds:
        print("logreg_cv against scikit-learn's LogisticRegressionCV (split 0 of z1+z2, the same folds):")
        out['cv_sklearn'] = cv_sklearn_compare(feats, y, res_cv)
        print(f"  sklearn total {sum(r['sklearn_s'] for r in out['cv_sklearn']):.1f} s for the 5 labels of one split and one feature set")
    if a.json:
        write_json(a.json, out)
        print(f"wrote {a.json}")
    return out


if __name__ == '__main__':
    main()
