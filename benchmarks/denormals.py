#!/usr/bin/env python
"""Denormal floats late in training: step speed with and without flush-to-zero, and what flushing does to the losses.

    python benchmarks/denormals.py speed  --snaps runs/long/vae_seed0 [--rounds 3 --iters 20] [--json out.json]
    python benchmarks/denormals.py losses --snap runs/long/vae_seed0/snap_307200.pth [--steps 200]

`speed` times training steps (bs 64, real dSprites batches, Adam, float32, torch's default threads) of a fresh model and
of the models saved at several points of a long run (`mpvae-train --stop-images` snapshots), each with denormals kept (IEEE) and
flushed on every torch thread (`mpvae.speed.flush_denormals`). Every (model, mode) runs once per round, in rotating
order, `--iters` timed steps after 3 warm-up steps; the figure is the median over rounds. The CPU is named.

`losses` starts three runs from one snapshot, with the same batches and the same sampling noise: float32 with denormals
kept (the reference), float32 with them flushed, and bf16 autocast; it reports how far each run's per-step losses are
from the reference's (mean and max absolute difference, in nats per image, and relative to the loss).
"""
from __future__ import annotations
import argparse, json, statistics, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, write_json  # noqa: E402


def _batches(ds, n, bs=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [ds.images(torch.randint(0, len(ds), (bs,), generator=g)) for _ in range(n)]


def _model(src):
    from mpvae.model import MPVAE, load_model
    if src == 'fresh':
        torch.manual_seed(0); return MPVAE(latent_dims=(12,))
    return load_model(src).train()


def _steps(model, xs, precision='fp32', seed=0):
    "Train `model` on the batches `xs`; per-step losses."
    from mpvae.loss import MPVAELoss, LossConfig
    loss_fn = MPVAELoss(LossConfig(betas=4.0)); opt = torch.optim.Adam(model.parameters(), 1e-3)
    torch.manual_seed(seed); out = []
    for x in xs:
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=precision == 'bf16'): o = model(x)
        l = loss_fn(o, x); opt.zero_grad(set_to_none=True); l.backward(); opt.step(); out.append(float(l))
    return out


def speed(a):
    from mpvae.dsprites import load_dsprites
    from mpvae.speed import flush_denormals, denormals_flushed
    ds = load_dsprites(progress=False)
    snaps = sorted(Path(a.snaps).glob('snap_*.pth'), key=lambda p: int(p.stem.split('_')[1]))
    if a.max_snaps and len(snaps) > a.max_snaps:   # spread over the run: first, last and evenly between
        idx = sorted({round(i*(len(snaps)-1)/(a.max_snaps-1)) for i in range(a.max_snaps)}); snaps = [snaps[i] for i in idx]
    srcs = ['fresh'] + [str(p) for p in snaps]
    xs = _batches(ds, 3 + a.iters)
    rates = {(s, f): [] for s in srcs for f in (False, True)}
    keys = list(rates)
    for r in range(a.rounds):
        for s, f in keys[r % len(keys):] + keys[:r % len(keys)]:
            flush_denormals(f)
            assert denormals_flushed() == (1.0 if f else 0.0)
            m = _model(s); from mpvae.loss import MPVAELoss, LossConfig
            loss_fn = MPVAELoss(LossConfig(betas=4.0)); opt = torch.optim.Adam(m.parameters(), 1e-3)
            for i, x in enumerate(xs):
                if i == 3: t0 = time.perf_counter()
                l = loss_fn(m(x), x); opt.zero_grad(set_to_none=True); l.backward(); opt.step()
            rates[(s, f)].append(a.iters * 64 / (time.perf_counter() - t0))
    flush_denormals(False)
    res = {'cpu': cpu_model(), 'torch': str(torch.__version__), 'threads': torch.get_num_threads(), 'rounds': a.rounds, 'iters': a.iters,
           'rows': []}
    fresh = statistics.median(rates[('fresh', True)])
    print(f"CPU: {res['cpu']}, {res['threads']} threads, torch {res['torch']}; img/s, median of {a.rounds} rounds x {a.iters} steps")
    print(f"{'model':40s} {'images':>10s} {'denormals kept':>15s} {'flushed':>9s} {'flushed/kept':>13s} {'flushed/fresh':>14s}")
    for s in srcs:
        kept, fl = statistics.median(rates[(s, False)]), statistics.median(rates[(s, True)])
        n = 0 if s == 'fresh' else int(Path(s).stem.split('_')[1])
        res['rows'].append(dict(model=s, images=n, kept=round(kept, 1), flushed=round(fl, 1), ratio=round(fl/kept, 3),
                                vs_fresh=round(fl/fresh, 3), kept_runs=rates[(s, False)], flushed_runs=rates[(s, True)]))
        print(f"{Path(s).parent.name + '/' + Path(s).name if s != 'fresh' else 'fresh':40s} {n:>10,} {kept:>15.0f} {fl:>9.0f} {fl/kept:>13.2f} {fl/fresh:>14.2f}")
    if a.json: write_json(a.json, res)


def losses(a):
    from mpvae.dsprites import load_dsprites
    from mpvae.speed import flush_denormals
    ds = load_dsprites(progress=False)
    xs = _batches(ds, a.steps, seed=1)
    flush_denormals(False); ref = _steps(_model(a.snap), xs)
    flush_denormals(True); fl = _steps(_model(a.snap), xs)
    flush_denormals(False); bf = _steps(_model(a.snap), xs, 'bf16')
    def cmp(v):
        d = [abs(x - y) for x, y in zip(v, ref)]
        return dict(mean_abs=statistics.mean(d), max_abs=max(d), mean_rel=statistics.mean(x/y for x, y in zip(d, ref)))
    res = {'cpu': cpu_model(), 'snap': a.snap, 'steps': a.steps, 'ref_mean_loss': statistics.mean(ref),
           'flushed_vs_ref': cmp(fl), 'bf16_vs_ref': cmp(bf)}
    print(f"{a.steps} steps from {a.snap}; reference (fp32, denormals kept) mean loss {res['ref_mean_loss']:.3f} nats/image")
    for k in ('flushed_vs_ref', 'bf16_vs_ref'):
        c = res[k]; print(f"  {k:15s} mean |diff| {c['mean_abs']:.2e}  max |diff| {c['max_abs']:.2e}  mean relative {c['mean_rel']:.2e}")
    if a.json: write_json(a.json, res)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    s = sub.add_parser('speed'); s.add_argument('--snaps', required=True); s.add_argument('--rounds', type=int, default=3)
    s.add_argument('--iters', type=int, default=20); s.add_argument('--max-snaps', type=int, default=4); s.add_argument('--json')
    l = sub.add_parser('losses'); l.add_argument('--snap', required=True); l.add_argument('--steps', type=int, default=200); l.add_argument('--json')
    a = p.parse_args(argv)
    speed(a) if a.cmd == 'speed' else losses(a)


if __name__ == '__main__':
    main()
