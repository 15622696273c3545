"""Interleaved A/B of memory layouts for the bare training loop (paper net, batch 64, beta 4, Adam):
contiguous ('base'), channels-last for the last transposed conv only ('lastcl'), channels-last everywhere ('fullcl');
fp32 and bf16 autocast. Prints images/s medians and the median per-round ratio to 'base'.

Usage: python benchmarks/layout_ab.py [--threads 1] [--rounds 5] [--iters 15]
"""
import argparse
import torch, time, statistics as st, types
from mpvae.model import MPVAE, MPVAEConfig
from mpvae.loss import MPVAELoss, LossConfig
ap = argparse.ArgumentParser(); ap.add_argument("--threads", type=int, default=1); ap.add_argument("--rounds", type=int, default=5); ap.add_argument("--iters", type=int, default=15)
A = ap.parse_args(); torch.set_num_threads(A.threads)
x = (torch.rand(64, 1, 64, 64) < .1).float()
def make(variant):
    torch.manual_seed(0); m = MPVAE(MPVAEConfig())
    if variant == 'fullcl': m = m.to(memory_format=torch.channels_last)
    if variant == 'pad2':   # the 1-channel output conv computed as a 2-channel one whose second channel is zero, then dropped
        import torch.nn.functional as F
        last = m.up[-1]
        def fwd(y, last=last):
            w = torch.cat([last.weight, torch.zeros_like(last.weight)], 1)
            b = None if last.bias is None else torch.cat([last.bias, torch.zeros_like(last.bias)])
            return F.conv_transpose2d(y, w, b, last.stride, last.padding, last.output_padding, last.groups, last.dilation)[:, :1]
        last.forward = fwd
    if variant == 'lastcl':
        last = m.up[-1]; last.to(memory_format=torch.channels_last)
        orig = last.forward
        last.forward = lambda y: orig(y.contiguous(memory_format=torch.channels_last))
    return m, torch.optim.Adam(m.parameters(), 1e-3)
loss = MPVAELoss(LossConfig(betas=4.0))
def run(m, opt, prec, n=None):
    n = n or A.iters
    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=prec=='bf16'): out = m(x)
        l = loss(out, x); opt.zero_grad(set_to_none=True); l.backward(); opt.step()
    for _ in range(2): step()
    t = time.perf_counter()
    for _ in range(n): step()
    return n*64/(time.perf_counter()-t)
res = {}

vs = ['base', 'lastcl', 'fullcl', 'pad2']
models = {(v, p): make(v) for v in vs for p in ('fp32', 'bf16')}
for r in range(A.rounds):
    for v in (vs if r % 2 == 0 else vs[::-1]):
        for p in ('fp32', 'bf16'):
            res.setdefault((v, p), []).append(run(*models[(v, p)], p))
for k, v in res.items(): print(k, f"{st.median(v):.0f} img/s", [round(a) for a in v])
for p in ('fp32','bf16'):
    for v in vs[1:]:
        print(p, v, '/ base', round(st.median([a/b for a, b in zip(res[(v,p)], res[('base',p)])]), 3))
