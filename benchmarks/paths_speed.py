#!/usr/bin/env python
"""Training speed of the three-path dSprites MPVAE against the paper's 2-path one and the baseline, in one process.

Models: `baseline` (z = 12), `mpvae2` (paths 3, 9 at taps 4, 5: the paper's net), `mpvae3` (paths 3, 3, 6 at taps 3, 4, 5:
`reports/dsprites_three_paths.md`). Each round times `--iters` bare training steps (model, `MPVAELoss` with beta 4,
torch Adam, batch 64, float32) of every model after 2 untimed ones, in an order that reverses every other round, so
a machine that speeds up or slows down during the run affects all alike. Prints images/s medians over rounds and the
median of the per-round ratios to `mpvae2`. Time nothing else on the machine meanwhile.

    python benchmarks/paths_speed.py --threads 1 --rounds 7 --iters 20
"""
import argparse, statistics as st, time
import torch
from mpvae.model import MPVAE, MPVAEConfig
from mpvae.loss import MPVAELoss, LossConfig
from mpvae.speed import cpu_name

MODELS = {'baseline': dict(latent_dims=(12,)), 'mpvae2': dict(latent_dims=(3, 9)),
          'mpvae3': dict(latent_dims=(3, 3, 6), taps=(3, 4, 5))}


def make(name):
    "A freshly seeded model, its loss (beta 4 on every path) and its Adam."
    torch.manual_seed(0); m = MPVAE(MPVAEConfig(**MODELS[name]))
    return m, MPVAELoss(LossConfig(betas=4.)), torch.optim.Adam(m.parameters(), 1e-4)


def rate(m, loss, opt, x, n, warmup=2):
    "Images per second of `n` training steps after `warmup` untimed ones."
    def step():
        l = loss(m(x), x); opt.zero_grad(); l.backward(); opt.step()
    for _ in range(warmup): step()
    t = time.perf_counter()
    for _ in range(n): step()
    return n * len(x) / (time.perf_counter() - t)


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--threads', type=int, default=1); p.add_argument('--rounds', type=int, default=7)
    p.add_argument('--iters', type=int, default=20); p.add_argument('--bs', type=int, default=64)
    a = p.parse_args()
    torch.set_num_threads(a.threads); torch.set_flush_denormal(True)
    x = (torch.rand(a.bs, 1, 64, 64) > 0.9).float()
    built = {k: make(k) for k in MODELS}
    rates = {k: [] for k in MODELS}
    for r in range(a.rounds):
        for k in (list(MODELS) if r % 2 == 0 else list(MODELS)[::-1]): rates[k].append(rate(*built[k], x, a.iters))
    print(f"{cpu_name()}, {a.threads} thread(s), batch {a.bs}, float32, {a.rounds} rounds x {a.iters} steps")
    for k in MODELS:
        params = sum(q.numel() for q in built[k][0].parameters())
        ratio = st.median(v / b for v, b in zip(rates[k], rates['mpvae2']))
        print(f"{k:7s} {params:>9,} params  {st.median(rates[k]):7.1f} img/s (median)  {ratio:.3f} x mpvae2 (median of per-round ratios)")


if __name__ == '__main__':
    main()
