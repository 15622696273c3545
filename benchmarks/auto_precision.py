#!/usr/bin/env python
"""Is `precision='auto'` right? Its quick choice against a long measurement of every candidate, on this machine.

    python benchmarks/auto_precision.py [--bs 64] [--repeats 3] [--long-seconds 60] [--json out.json]

Each repeat runs `mpvae.speed.auto_precision` without its cache (the <= 10 s measurement a training run pays once per
machine) and records its choice; then every candidate (fp32/bf16 x contiguous/channels-last) is timed for
`--long-seconds` in all (`time_candidates`, interleaved rounds, median). The auto choice is right when its long-run speed
is within 5% of the fastest candidate's: below that, a few-second measurement cannot tell them apart, and the cost of
the wrong one is under 5%. The CPU is named; run it on an otherwise idle machine.
"""
from __future__ import annotations
import argparse, sys, time
from pathlib import Path
import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, write_json  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--bs', type=int, default=64); p.add_argument('--repeats', type=int, default=3)
    p.add_argument('--long-seconds', type=float, default=60.); p.add_argument('--json')
    p.add_argument('--latent-dims', type=int, nargs='+', default=[3, 9])
    a = p.parse_args(argv)
    from mpvae.speed import auto_precision, time_candidates, flush_denormals
    flush_denormals(True)
    cfg = dict(latent_dims=tuple(a.latent_dims))
    t = time.time()
    choices = [auto_precision(cfg, a.bs, cache=False, verbose=False) for _ in range(a.repeats)]
    quick_s = (time.time() - t) / a.repeats
    long = time_candidates(cfg, a.bs, seconds=a.long_seconds, rounds=5)
    name = lambda p, cl: f"{p}{'+cl' if cl else ''}"
    best = max(long, key=long.get)
    print(f"CPU: {cpu_model()}, {torch.get_num_threads()} threads, torch {torch.__version__}, bs {a.bs}, latent_dims {a.latent_dims}")
    print(f"long measurement ({a.long_seconds:.0f} s, 5 rounds), img/s: " + ', '.join(f"{name(*c)} {v:,.0f}" for c, v in long.items()))
    rows = []
    for c in choices:
        k = (c['precision'], c['channels_last'])
        rows.append(dict(choice=name(*k), quick=c['img_per_s'], long_speed=long[k], of_best=long[k]/long[best]))
        print(f"auto chose {name(*k):8s} (quick: {', '.join(f'{n} {v:,.0f}' for n, v in c['img_per_s'].items())}) -> "
              f"{long[k]:,.0f} img/s = {long[k]/long[best]:.3f} of the fastest ({name(*best)})")
    print(f"one auto measurement: {quick_s:.1f} s")
    if a.json:
        write_json(a.json, dict(cpu=cpu_model(), threads=torch.get_num_threads(), torch=str(torch.__version__), bs=a.bs,
                                long={name(*c): v for c, v in long.items()}, best=name(*best), choices=rows, quick_seconds=quick_s))


if __name__ == '__main__':
    main()
