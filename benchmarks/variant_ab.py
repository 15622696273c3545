"""Interleaved A/B of variants of the bare training loop (paper net, batch 64, beta 4, torch Adam), fp32 and bf16 autocast.

Variants: 'base' (as shipped), 'lastcl' (channels-last input and weight for the last transposed conv only), 'fullcl'
(channels-last everywhere), 'pad2' (the 1-channel output conv computed as a 2-channel one whose second channel is zero,
then dropped), 'compile' (torch.compile of the model). Every variant runs `--iters` steps per round, the order reversed
every other round; prints images/s medians and the median per-round ratio of each variant to 'base'.

Usage: python benchmarks/variant_ab.py [--variants base lastcl fullcl pad2] [--threads 1] [--rounds 5] [--iters 15]
"""
import argparse, statistics as st, time
import torch
import torch.nn.functional as F
from mpvae.model import MPVAE, MPVAEConfig
from mpvae.loss import MPVAELoss, LossConfig

VARIANTS = ('base', 'lastcl', 'fullcl', 'pad2', 'compile')


def make(variant):
    "A freshly seeded paper net changed as `variant` says, and its Adam."
    torch.manual_seed(0); m = MPVAE(MPVAEConfig()); opt = torch.optim.Adam(m.parameters(), 1e-3)
    last = m.up[-1]
    if variant == 'fullcl': m = m.to(memory_format=torch.channels_last)
    if variant == 'lastcl':
        last.to(memory_format=torch.channels_last)
        orig = last.forward
        last.forward = lambda y: orig(y.contiguous(memory_format=torch.channels_last))
    if variant == 'pad2':
        def fwd(y):
            w = torch.cat([last.weight, torch.zeros_like(last.weight)], 1)
            b = None if last.bias is None else torch.cat([last.bias, torch.zeros_like(last.bias)])
            return F.conv_transpose2d(y, w, b, last.stride, last.padding, last.output_padding, last.groups, last.dilation)[:, :1]
        last.forward = fwd
    return (torch.compile(m) if variant == 'compile' else m), opt


def rate(m, opt, loss, x, prec, n, warmup=2):
    "Images per second of `n` training steps after `warmup` untimed ones."
    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=prec == 'bf16'): out = m(x)
        l = loss(out, x); opt.zero_grad(set_to_none=True); l.backward(); opt.step()
    for _ in range(warmup): step()
    t = time.perf_counter()
    for _ in range(n): step()
    return n * len(x) / (time.perf_counter() - t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--variants', nargs='+', default=['base', 'lastcl', 'fullcl', 'pad2'], choices=VARIANTS)
    ap.add_argument('--threads', type=int, default=1); ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--iters', type=int, default=15)
    a = ap.parse_args(argv)
    vs = ['base'] + [v for v in a.variants if v != 'base']
    torch.set_num_threads(a.threads)
    x = (torch.rand(64, 1, 64, 64) < .1).float()
    loss = MPVAELoss(LossConfig(betas=4.0))
    models = {(v, p): make(v) for v in vs for p in ('fp32', 'bf16')}
    for (v, p), (m, o) in models.items():       # first steps: torch.compile compiles here
        t = time.time(); rate(m, o, loss, x, p, 1, warmup=0)
        print(f"{v}/{p}: first step {time.time() - t:.1f} s")
    res = {}
    for r in range(a.rounds):
        for v in (vs if r % 2 == 0 else vs[::-1]):
            for p in ('fp32', 'bf16'): res.setdefault((v, p), []).append(rate(*models[(v, p)], loss, x, p, a.iters))
    for (v, p), r in res.items(): print(f"{v}/{p}: {st.median(r):.0f} img/s", [round(i) for i in r])
    for p in ('fp32', 'bf16'):
        for v in vs[1:]:
            print(f"{p} {v} / base: {st.median([i / j for i, j in zip(res[(v, p)], res[('base', p)])]):.3f}")
    return res


if __name__ == '__main__':
    main()
