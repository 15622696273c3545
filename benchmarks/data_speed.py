#!/usr/bin/env python
"""dSprites data speed: full-grid render, cache reload, memory, and the loader's images/s against a training step's.

1. `render`: `mpvae.dsprites.render_dsprites` draws the 737,280-image grid and bit-packs it (timed once);
2. `save` / `reload`: the versioned npz cache is written (atomically) and read back (median of --reload-repeats);
3. `memory`: bytes held by the `DSprites` object (packed images + classes + values) and the process's peak RSS;
4. `loader`: images/s of `dsprites_dls(ds, bs=64).train` alone -- index slice, bit unpacking, transfer --
   iterated for --batches batches;
5. `train`: images/s of one training step of a stand-in for the paper's network (encoder: 4 convs 4x4 stride 2
   32/32/64/64 + a linear layer to 2x12; decoder: the mirror with transposed convs; Bernoulli (BCE) reconstruction +
   KL, Adam, batch 64, fp32) on a fixed batch, for --train-steps steps after 3 warm-up steps.

Loader and training runs alternate round after round (--repeats rounds), so a machine shared with other jobs
slows both alike; figures are medians over rounds, and the loader/train ratio is given both as the ratio of the
medians and as the median of the per-round ratios. The target is a ratio >= 20: the loader is never the bottleneck.

    python benchmarks/data_speed.py                      # full grid (renders and caches it if needed)
    python benchmarks/data_speed.py --grid small --repeats 1 --batches 20 --train-steps 2   # a quick smoke run
"""
from __future__ import annotations
import argparse, datetime, os, platform, resource, statistics, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F_
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, loadavg, peak_rss_mb, write_json  # noqa: E402

TARGET = 20.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--grid', default='full', choices=('full', 'small'), help="full dSprites grid, or a 3x2x4x8x8 subset (smoke runs)")
    p.add_argument('--cache-dir', default=None, help='data folder of the render cache (default: mpvae.core.data_dir())')
    p.add_argument('--rerender', action='store_true', help='render even if a cache exists (the render is always timed when it happens)')
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'), help='device of the loader and the training step')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--batches', type=int, default=300, help='loader batches per round (default 300)')
    p.add_argument('--train-steps', type=int, default=20, help='timed training steps per round (default 20)')
    p.add_argument('--repeats', type=int, default=5, help='rounds (default 5)')
    p.add_argument('--reload-repeats', type=int, default=3, help='cache reloads timed (default 3)')
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: leave torch\'s default)')
    p.add_argument('--json', default=None, help='also write the results to this JSON file')
    a = p.parse_args(argv)
    if min(a.bs, a.batches, a.train_steps, a.repeats, a.reload_repeats) < 1: p.error('counts must be >= 1')
    if a.device == 'cuda' and not torch.cuda.is_available(): p.error('--device cuda: CUDA is not available here')
    return a


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize(dev)


class StandIn(nn.Module):
    "The paper's dSprites network as a plain VAE: 4 convs 4x4/2 (32, 32, 64, 64) + linear to 2x12, mirrored decoder."
    def __init__(self, z=12):
        super().__init__()
        c = lambda i, o: nn.Conv2d(i, o, 4, 2, 1)
        t = lambda i, o: nn.ConvTranspose2d(i, o, 4, 2, 1)
        self.enc = nn.Sequential(c(1, 32), nn.ReLU(), c(32, 32), nn.ReLU(), c(32, 64), nn.ReLU(), c(64, 64), nn.ReLU(),
                                 nn.Flatten(), nn.Linear(64 * 4 * 4, 2 * z))
        self.dec = nn.Sequential(nn.Linear(z, 64 * 4 * 4), nn.ReLU(), nn.Unflatten(1, (64, 4, 4)), t(64, 64), nn.ReLU(),
                                 t(64, 32), nn.ReLU(), t(32, 32), nn.ReLU(), t(32, 1))
    def forward(self, x):
        mu, logvar = self.enc(x).chunk(2, 1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return self.dec(z), mu, logvar

def vae_loss(logits, x, mu, logvar, beta=4.0):
    rec = F_.binary_cross_entropy_with_logits(logits, x, reduction='sum') / len(x)
    kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(1).mean()
    return rec + beta * kl


def time_loader(dl, n_batches, dev):
    "images/s of iterating the loader for n_batches (restarting epochs as needed)."
    done, imgs = 0, 0
    sync(dev); t0 = time.perf_counter()
    while done < n_batches:
        for xb, _ in dl:
            imgs += len(xb); done += 1
            if done >= n_batches: break
    sync(dev)
    return imgs / (time.perf_counter() - t0)

def time_train(model, opt, xb, steps, dev):
    sync(dev); t0 = time.perf_counter()
    for _ in range(steps):
        logits, mu, logvar = model(xb)
        loss = vae_loss(logits, xb, mu, logvar)
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
    sync(dev)
    return steps * len(xb) / (time.perf_counter() - t0)


def main(argv=None):
    a = parse_args(argv)
    if a.threads: torch.set_num_threads(a.threads)
    from mpvae.dsprites import (DSPRITES_FACTORS, DSprites, render_dsprites, render_cache_path, save_render_cache,
                                load_render_cache, dsprites_dls, RENDERER_VERSION)
    dev = torch.device(a.device)
    factors = DSPRITES_FACTORS if a.grid == 'full' else \
        DSPRITES_FACTORS.subset(scale=[0, 5], orientation=[0, 10, 20, 30], posX=list(range(0, 32, 4)), posY=list(range(0, 32, 4)))
    res = dict(machine=dict(date=datetime.datetime.now().isoformat(timespec='seconds'), cpu=cpu_model(), cores=os.cpu_count(),
                            torch_threads=torch.get_num_threads(), device=str(dev) if dev.type == 'cpu' else torch.cuda.get_device_name(dev),
                            torch=torch.__version__, loadavg_before=loadavg()),
               settings=dict(grid=a.grid, n_images=factors.n, bs=a.bs, batches=a.batches, train_steps=a.train_steps,
                             repeats=a.repeats, renderer_version=RENDERER_VERSION))
    tmp = None
    cache_dir = a.cache_dir
    if cache_dir is None and a.grid == 'small': cache_dir = tmp = tempfile.TemporaryDirectory()
    cache = render_cache_path(cache_dir.name if tmp else cache_dir, factors)
    res['cache'] = str(cache)

    # 1-2. render (when needed), save, reload
    if a.rerender or not cache.is_file():
        t0 = time.perf_counter(); packed = render_dsprites(factors, progress=False); res['render_s'] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter(); save_render_cache(cache, packed, factors); res['save_s'] = round(time.perf_counter() - t0, 2)
        del packed
    else: res['render_s'] = None
    reloads = []
    for _ in range(a.reload_repeats):
        t0 = time.perf_counter(); packed = load_render_cache(cache, factors); reloads.append(time.perf_counter() - t0)
    res['reload_s'] = dict(runs=[round(r, 3) for r in reloads], median=round(statistics.median(reloads), 3),
                           note='the file was just written or read: this is a reload from the OS page cache plus zip CRC check')
    ds = DSprites(packed, factors, 'rendered')

    # 3. memory
    res['memory'] = dict(dataset_mb=round(ds.nbytes() / 2**20, 1), packed_mb=round(ds.packed.nbytes / 2**20, 1))

    # 4-5. loader vs training step, interleaved rounds
    dls = dsprites_dls(ds, bs=a.bs, valid_pct=0.1, seed=0, device=dev)
    torch.manual_seed(0)
    model = StandIn().to(dev); opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    xb = dls.one_batch()[0]
    time_train(model, opt, xb, 3, dev); time_loader(dls.train, 3, dev)          # warm-up
    loader, train = [], []
    for r in range(a.repeats):
        loader.append(time_loader(dls.train, a.batches, dev))
        train.append(time_train(model, opt, xb, a.train_steps, dev))
    med_l, med_t = statistics.median(loader), statistics.median(train)
    ratio = med_l / med_t; per_round = statistics.median([l / t for l, t in zip(loader, train)])
    res['loader_images_per_s'] = dict(runs=[round(v) for v in loader], median=round(med_l))
    res['train_images_per_s'] = dict(runs=[round(v, 1) for v in train], median=round(med_t, 1))
    res['ratio'] = dict(ratio_of_medians=round(ratio, 1), median_of_round_ratios=round(per_round, 1), target=TARGET, ok=bool(ratio >= TARGET))
    res['peak_rss_mb'] = peak_rss_mb()
    res['machine']['loadavg_after'] = loadavg()

    m = res['machine']
    print(f"dSprites data speed -- {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), device {m['device']}")
    print(f"load average before/after: {m['loadavg_before']} / {m['loadavg_after']} (a busy machine inflates every time below)")
    print(f"grid: {factors.n} images ({a.grid}); cache {cache}")
    print(f"render:  {res['render_s']} s" + ('' if res['render_s'] is not None else ' (cache present; pass --rerender to time a render)')
          + (f"   save: {res.get('save_s')} s" if res.get('save_s') is not None else ''))
    print(f"reload:  median {res['reload_s']['median']} s of {res['reload_s']['runs']}")
    print(f"memory:  dataset {res['memory']['dataset_mb']} MiB (packed images {res['memory']['packed_mb']} MiB), peak RSS {res['peak_rss_mb']} MiB")
    print(f"loader:  {res['loader_images_per_s']['median']} images/s (median of {res['loader_images_per_s']['runs']})")
    print(f"train:   {res['train_images_per_s']['median']} images/s (median of {res['train_images_per_s']['runs']})")
    print(f"ratio loader/train: {res['ratio']['ratio_of_medians']} (median of per-round ratios {res['ratio']['median_of_round_ratios']}); "
          f"target >= {TARGET}: {'OK' if res['ratio']['ok'] else 'MISSED'}")
    if a.json: write_json(a.json, res)
    if tmp is not None: tmp.cleanup()
    return res


if __name__ == '__main__':
    main()
