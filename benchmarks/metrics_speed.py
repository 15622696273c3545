#!/usr/bin/env python
"""Time of the five disentanglement metrics (mpvae.disentangle) for one model, at disentanglement_lib's default sizes.

Ground truth: a dSprites-shaped `ToyGroundTruth` (factor sizes 1, 3, 6, 40, 32, 32; the size-1 `color` is dropped
by every metric, as in disentanglement_lib). Representation: a *stand-in* that costs next to nothing -- standardised
factor classes mixed by a fixed random matrix through tanh, plus noise, plus one near-constant (inactive) dimension
-- so what is timed is the metrics' own cost (sampling, classifiers, trees), not an encoder's. `--encoder mpvae`
additionally measures the paper's conv encoder on random 64x64 images (one thread) and extrapolates what encoding
the metrics' images would add, sampled (~2.9 million images) or with `tabulate=True` (737,280 once).

Two runs, each repeated `--repeats` times (median reported):

* `single`:    one 12-dim representation, each metric through its public function
               (mig/dci/sap on 15,000 sampled points, factor_vae_score, beta_vae_score);
* `per-path`:  `evaluate_paths` on a 2-path representation (3 + 9 dims): every metric for z1, z2 and z1+z2.

    python benchmarks/metrics_speed.py --repeats 3 --json metrics_speed.json
    python benchmarks/metrics_speed.py --scale 0.1          # a quick look at a tenth of the sizes

The machine may be shared: the load average before and after each run is printed beside its time.
"""
from __future__ import annotations
import argparse, datetime, os, platform, statistics, sys, time
from pathlib import Path
import numpy as np

from mpvae.disentangle import (METRIC_DEFAULTS, ToyGroundTruth, sample_codes, mig, dci, sap, factor_vae_score, beta_vae_score,
                               evaluate_paths, metric_settings)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, loadavg, write_json  # noqa: E402

SIZES = [1, 3, 6, 40, 32, 32]
NAMES = ['color', 'shape', 'scale', 'orientation', 'posX', 'posY']
BUDGET_S = 180


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--repeats', type=int, default=1, help='repeats of each run; the median is reported (default 1)')
    p.add_argument('--scale', type=float, default=1.0, help='multiply every default size by this (default 1 = disentanglement_lib)')
    p.add_argument('--runs', nargs='+', default=['single', 'per-path'], choices=['single', 'per-path'])
    p.add_argument('--dims', type=int, nargs='+', default=[3, 9], help='latent size per path for per-path (default 3 9)')
    p.add_argument('--encoder', default='none', choices=['none', 'mpvae'],
                   help="also time the paper's MPVAE encoder on CPU and extrapolate the encoding cost (default none)")
    p.add_argument('--pool', type=int, default=50_000, help='pool size for the encoder extrapolation (default 50000)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='write all results to this JSON file')
    a = p.parse_args(argv)
    if a.repeats < 1 or not 0 < a.scale <= 1: p.error('--repeats must be >= 1 and --scale in (0, 1]')
    return a


class StandIn:
    "Cheap representation: tanh(standardised factors @ W) + noise per path, plus a near-constant dimension; counts images."
    def __init__(self, dims, seed=0):
        g = np.random.default_rng(seed)
        self.dims, self.D = list(dims), sum(dims)
        self.W = np.eye(5, self.D - 1) + 0.3 * g.normal(size=(5, self.D - 1))
        self.mean = (np.array(SIZES[1:]) - 1) / 2; self.std = np.sqrt((np.array(SIZES[1:])**2 - 1) / 12)
        self.g, self.images, self.calls = np.random.default_rng(seed + 1), 0, 0
    def __call__(self, im):
        self.images += len(im); self.calls += 1
        f = (np.asarray(im)[:, 1:] - self.mean) / self.std
        z = np.c_[np.tanh(f @ self.W) + 0.1 * self.g.normal(size=(len(im), self.D - 1)), 0.01 * self.g.normal(size=len(im))]
        return z if len(self.dims) == 1 else np.split(z, np.cumsum(self.dims)[:-1], 1)


def scaled(scale):
    "METRIC_DEFAULTS with every size multiplied by `scale` (batch sizes, thresholds and bins unchanged)."
    keep = {'n_bins', 'batch_size', 'prune_threshold', 'C', 'estimator', 'n_threads'}
    return {m: {k: (v if k in keep else max(50, int(round(v * scale)))) for k, v in s.items()} for m, s in METRIC_DEFAULTS.items()}


def run_single(S, seed):
    data, rep = ToyGroundTruth(SIZES, NAMES), StandIn([12], seed)
    sec, t0 = {}, time.perf_counter()
    n = max(S['mig']['n'], S['dci']['n_train'] + S['dci']['n_test'], S['sap']['n_train'] + S['sap']['n_test'])
    t = time.perf_counter(); codes, classes = sample_codes(data, rep, n, seed); sec['sample'] = time.perf_counter() - t
    scores = {}
    t = time.perf_counter(); scores['mig'] = mig(codes, classes, seed=seed, factor_names=NAMES, **S['mig'])['mig']; sec['mig'] = time.perf_counter() - t
    t = time.perf_counter(); r = dci(codes, classes, seed=seed, factor_names=NAMES, **S['dci']); sec['dci'] = time.perf_counter() - t
    scores.update(dci_d=r['disentanglement'], dci_c=r['completeness'], dci_i=r['informativeness'])
    t = time.perf_counter(); scores['sap'] = sap(codes, classes, seed=seed, factor_names=NAMES, **S['sap'])['sap']; sec['sap'] = time.perf_counter() - t
    t = time.perf_counter(); r = factor_vae_score(data, rep, seed=seed, **S['factor_vae']); sec['factor_vae'] = time.perf_counter() - t
    scores.update(factor_vae=r['eval_accuracy'], factor_vae_active=r['num_active_dims'])
    t = time.perf_counter(); scores['beta_vae'] = beta_vae_score(data, rep, seed=seed, **S['beta_vae'])['eval_accuracy']; sec['beta_vae'] = time.perf_counter() - t
    sec['total'] = time.perf_counter() - t0
    return dict(seconds=sec, scores=scores, images_encoded=rep.images, representation_calls=rep.calls)


def run_per_path(S, seed, dims):
    data, rep = ToyGroundTruth(SIZES, NAMES), StandIn(dims, seed)
    t0 = time.perf_counter()
    res = evaluate_paths(data=data, representation_fn=rep, settings=S, seed=seed)
    sec = dict(res.attrs['seconds']); sec['total'] = time.perf_counter() - t0
    return dict(seconds=sec, scores=res.round(4).to_dict(orient='index'), images_encoded=rep.images, representation_calls=rep.calls)


def encoder_rate(n=1024, bs=256):
    "Images/s of the paper's 2-path MPVAE encoder (mpvae.model defaults) on random 64x64 images, one CPU thread."
    import torch
    from mpvae.model import MPVAE
    torch.set_num_threads(1); torch.manual_seed(0)
    m = MPVAE().eval(); x = (torch.rand(n, 1, 64, 64) > 0.5).float()
    with torch.no_grad():
        m.encode(x[:bs]); t = time.perf_counter()
        for i in range(0, n, bs): m.encode(x[i:i+bs])
    return n / (time.perf_counter() - t)


def benchmark(a) -> dict:
    S = scaled(a.scale)
    out = dict(machine=dict(date=datetime.datetime.now().isoformat(timespec='seconds'), cpu=cpu_model(), cores=os.cpu_count(),
                            python=platform.python_version()),
               settings=dict(scale=a.scale, repeats=a.repeats, sizes=S, factor_sizes=SIZES, dims_per_path=a.dims, seed=a.seed),
               budget_s=BUDGET_S, runs={})
    for run in a.runs:
        reps = []
        for i in range(a.repeats):
            la, c0 = loadavg(), time.process_time()
            r = run_single(S, a.seed + i) if run == 'single' else run_per_path(S, a.seed + i, a.dims)
            r['cpu_s'] = time.process_time() - c0
            r['loadavg_before'], r['loadavg_after'] = la, loadavg(); reps.append(r)
            print(f"{run:9s} repeat {i}: {r['seconds']['total']:7.1f} s   " + '  '.join(f"{k} {v:.1f}" for k, v in r['seconds'].items() if k != 'total')
                  + f"   (cpu {r['cpu_s']:.1f} s)   load {r['loadavg_before']} -> {r['loadavg_after']}", flush=True)
        med = {k: statistics.median(r['seconds'][k] for r in reps) for k in reps[0]['seconds']}
        out['runs'][run] = dict(repeats=reps, median_seconds=med, median_cpu_s=statistics.median(r['cpu_s'] for r in reps), images_encoded=reps[0]['images_encoded'],
                                representation_calls=reps[0]['representation_calls'], scores=reps[0]['scores'])
    if a.encoder == 'mpvae':
        rate = encoder_rate(); imgs = out['runs'][a.runs[0]]['images_encoded']; grid = int(np.prod(SIZES))
        out['encoder'] = dict(images_per_s_1thread=rate, sampled_images=imgs, extra_s_sampled=imgs / rate,
                              tabulated_images=grid, extra_s_tabulated=grid / rate,
                              pool_images=a.pool, extra_s_pool=a.pool / rate)
    return out


def report(out) -> str:
    L = [f"# mpvae.disentangle metric timings, {out['machine']['date']}, {out['machine']['cpu']} x{out['machine']['cores']}",
         f"# sizes x{out['settings']['scale']} of disentanglement_lib's defaults; representation = cheap stand-in; "
         f"budget {out['budget_s']} s for all five metrics of one model", ""]
    for run, r in out['runs'].items():
        med = r['median_seconds']
        L.append(f"{run}: total {med['total']:.1f} s wall, {r['median_cpu_s']:.1f} s cpu (median of {len(r['repeats'])}) -- "
                 f"{'within' if med['total'] <= out['budget_s'] else 'OVER'} the {out['budget_s']} s budget")
        L.append('   ' + '  '.join(f"{k} {v:.1f} s" for k, v in med.items() if k != 'total'))
        L.append(f"   images encoded {r['images_encoded']:,} in {r['representation_calls']:,} representation calls; "
                 f"load avg before/after " + '; '.join(f"{x['loadavg_before']} -> {x['loadavg_after']}" for x in r['repeats']))
    if 'encoder' in out:
        e = out['encoder']
        L.append(f"MPVAE encoder (1 CPU thread): {e['images_per_s_1thread']:.0f} img/s -> a real encoder adds +{e['extra_s_sampled']:.0f} s "
                 f"to encode the {e['sampled_images']:,} sampled images, +{e['extra_s_tabulated']:.0f} s to tabulate all "
                 f"{e['tabulated_images']:,} grid points (exact), +{e['extra_s_pool']:.0f} s for a pool of {e['pool_images']:,} (approximation)")
    L += ['', 'what each number is:'] + [f"  {m}: {row.estimator}" for m, row in metric_settings(out['settings']['sizes']).iterrows()]
    return '\n'.join(L)


def main(argv=None):
    a = parse_args(argv)
    out = benchmark(a)
    print(report(out))
    if a.json: write_json(a.json, out)
    return out


if __name__ == '__main__':
    main()
