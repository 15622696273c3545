"""Interleaved A/B of eager vs torch.compile for the bare training loop (paper net, batch 64, beta 4), fp32 and bf16, 1 thread.
Usage: python benchmarks/compile_ab.py   (about 2 min here; compiling takes ~20 s)
"""
import torch, time, statistics as st
from mpvae.model import MPVAE, MPVAEConfig
from mpvae.loss import MPVAELoss, LossConfig
torch.set_num_threads(1)
x = (torch.rand(64, 1, 64, 64) < .1).float()
loss = MPVAELoss(LossConfig(betas=4.0))
def make(comp):
    torch.manual_seed(0); m = MPVAE(MPVAEConfig()); opt = torch.optim.Adam(m.parameters(), 1e-3)
    return (torch.compile(m) if comp else m), opt
def run(m, opt, prec, n):
    def step():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=prec=='bf16'): out = m(x)
        l = loss(out, x); opt.zero_grad(set_to_none=True); l.backward(); opt.step()
    for _ in range(2): step()
    t = time.perf_counter()
    for _ in range(n): step()
    return n*64/(time.perf_counter()-t)
models = {(c, p): make(c) for c in (False, True) for p in ('fp32', 'bf16')}
t = time.time()
for k, (m, o) in models.items(): run(m, o, k[1], 1)
print('compile+warm', round(time.time()-t, 1), 's')
res = {}
for r in range(6):
    for c in ((False, True) if r % 2 == 0 else (True, False)):
        for p in ('fp32', 'bf16'): res.setdefault((c, p), []).append(run(*models[(c, p)], p, 15))
for k, v in res.items(): print(k, round(st.median(v)), [round(a) for a in v])
for p in ('fp32', 'bf16'): print(p, 'compiled/eager', round(st.median([a/b for a, b in zip(res[(True, p)], res[(False, p)])]), 3))
print('compiled bf16 / eager fp32', round(st.median([a/b for a, b in zip(res[(True, 'bf16')], res[(False, 'fp32')])]), 3))
