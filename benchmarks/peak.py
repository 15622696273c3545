#!/usr/bin/env python
"""How far training is from this CPU's peak: the FLOPs of one training step of the paper's 2-path net, the images/s
`mpvae.speed.time_candidates` measures for each precision and layout, and the GFLOP/s that makes, next to a large matrix
product's GFLOP/s (the practical peak of the same threads) and a nominal peak (cores x clock x FLOP/cycle, an estimate).

    python benchmarks/peak.py --threads 2 --seconds 30 --json benchmarks/runs/peak_<cpu>.json

FLOPs are counted by torch's own `FlopCounterMode` (matrix products and convolutions, forward and backward, 2 per
multiply-add); elementwise work (activations, the loss, Adam) is not counted, so the fraction is a lower bound.
Run it with nothing else on the machine: it times.
"""
from __future__ import annotations
import argparse, re, statistics, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, loadavg, write_json  # noqa: E402


def step_flops(dims, bs:int) -> float:
    "FLOPs of one training step (forward, loss, backward) of an MPVAE with `dims`, per image."
    from torch.utils.flop_counter import FlopCounterMode
    from mpvae.model import MPVAE
    from mpvae.loss import MPVAELoss, LossConfig
    m, loss = MPVAE(latent_dims=tuple(dims)), MPVAELoss(LossConfig())
    x = (torch.rand(bs, 1, 64, 64) < 0.3).float()
    with FlopCounterMode(display=False) as fc:
        loss(m(x), x).backward()
    return fc.get_total_flops() / bs


def gemm_gflops(dtype, n:int=2048, seconds:float=3.) -> float:
    "GFLOP/s of an n x n matrix product in `dtype`, median of 5 timed slots."
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    a @ b
    rates = []
    for _ in range(5):
        k, t0 = 0, time.perf_counter()
        while k == 0 or time.perf_counter() - t0 < seconds / 5: a @ b; k += 1
        rates.append(2 * n**3 * k / (time.perf_counter() - t0) / 1e9)
    return statistics.median(rates)


def nominal_gflops(threads:int) -> tuple:
    "(GFLOP/s fp32, how it was estimated): threads x clock x FLOP/cycle, assuming 2 FMA units per core."
    info = Path('/proc/cpuinfo').read_text() if Path('/proc/cpuinfo').exists() else ''
    mhz = re.search(r'cpu MHz\s*:\s*([\d.]+)', info)
    lanes = 16 if 'avx512f' in info else 8 if 'avx2' in info else 4
    if not mhz: return None, 'no clock in /proc/cpuinfo'
    f = float(mhz.group(1)) / 1e3
    return threads * f * lanes * 2 * 2, f"{threads} threads x {f:.2f} GHz x {lanes} fp32 lanes x 2 (FMA) x 2 FMA units (assumed)"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--threads', type=int, default=2); p.add_argument('--bs', type=int, default=64)
    p.add_argument('--seconds', type=float, default=30.); p.add_argument('--latent-dims', type=int, nargs='+', default=[3, 9])
    p.add_argument('--json')
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    from mpvae.speed import time_candidates, cpu_candidates, flush_denormals
    flush_denormals(True)
    load0 = loadavg()
    fl = step_flops(a.latent_dims, a.bs)
    rates = time_candidates(dict(latent_dims=tuple(a.latent_dims)), a.bs, seconds=a.seconds, rounds=5, candidates=cpu_candidates())
    gemm = {'fp32': gemm_gflops(torch.float32), 'bf16': gemm_gflops(torch.bfloat16)}
    nom, how = nominal_gflops(a.threads)
    print(f"CPU: {cpu_model()}, {a.threads} threads, torch {torch.__version__}, bs {a.bs}, load {load0} -> {loadavg()}")
    print(f"one training step: {fl/1e6:.1f} MFLOP per image (matrix products and convolutions, forward + backward)")
    print(f"matrix product 2048^2: fp32 {gemm['fp32']:.1f} GFLOP/s, bf16 {gemm['bf16']:.1f} GFLOP/s; nominal fp32 peak "
          f"{nom and round(nom)} GFLOP/s ({how})")
    rows = []
    for (prec, cl), r in rates.items():
        g = r * fl / 1e9
        rows.append(dict(candidate=f"{prec}{'+cl' if cl else ''}", img_per_s=r, gflops=g, of_gemm=g / gemm[prec],
                         of_nominal=g / nom if nom else None))
        print(f"{rows[-1]['candidate']:8s} {r:7,.0f} img/s = {g:6.1f} GFLOP/s = {g/gemm[prec]:.2f} of the {prec} matrix product"
              + (f", {g/nom:.2f} of the nominal fp32 peak" if nom else ''))
    if a.json:
        write_json(a.json, dict(cpu=cpu_model(), threads=a.threads, torch=str(torch.__version__), bs=a.bs, load=[load0, loadavg()],
                                mflop_per_image=fl / 1e6, gemm_gflops=gemm, nominal_gflops=nom, nominal_how=how, rows=rows))


if __name__ == '__main__':
    main()
