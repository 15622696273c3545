#!/usr/bin/env python
"""Training throughput (images/s) of the paper's 2-path dSprites MPVAE, three ways, in one process:

1. `bare`:    a bare PyTorch loop (model, `MPVAELoss`, `torch.optim.Adam`; nothing else) -- the ceiling;
2. `learner`: our fastai Learner (`mpvae.train.mpvae_learner`) on our DataLoaders (`mpvae.loader.array_dls`),
              with its default callbacks and metrics;
3. `pythae`:  pythae's `BaseTrainer` training a `BetaVAE` whose encoder/decoder are our MPVAE's own modules,
              seen by pythae as one concatenated latent (z1 ++ z2), on pythae's own data pipeline.

All three get the same images (one float32 tensor in memory), the same batch size, Adam with the same lr,
the same betas (one value for both paths), the same seed for the weights.  Each *run* trains a fresh model for
`warmup + iters` batches (one epoch); the throughput of a run is `iters * bs` divided by the time between the end
of the last warm-up batch and the end of the last batch, read by a hook each framework calls after every batch
(so per-batch overhead -- data loading, callbacks, metrics, progress bars -- counts, per-run set-up does not;
the whole call's wall time is reported too as `fit_images_per_s`).  Runs of all contenders are interleaved,
round after round (the order rotates each round), so a machine shared with other jobs slows them alike;
the figure reported is the median over rounds, and ratios are given both as ratio of medians and as the median
of the per-round ratios.

    python benchmarks/train_speed.py --iters 20 --warmup 3 --repeats 5 --json bench.json

See BENCHMARKS.md for the numbers and how they were taken.
"""
from __future__ import annotations
import argparse, contextlib, datetime, io, logging, os, platform, resource, statistics, sys, tempfile, time
from pathlib import Path

import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_model, loadavg, peak_rss_mb, write_json  # noqa: E402

CONTENDERS = ('bare', 'learner', 'pythae')
PRECISIONS = ('fp32', 'bf16')
TARGETS = {'learner_over_bare': 0.95, 'ours_bf16_over_pythae_fp32': 1.8}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--iters', type=int, default=20, help='timed training batches per run (default 20)')
    p.add_argument('--warmup', type=int, default=3, help='untimed batches at the start of every run (default 3, >= 1)')
    p.add_argument('--repeats', type=int, default=5, help='rounds; every contender runs once per round (default 5)')
    p.add_argument('--bs', type=int, default=64, help='batch size (default 64)')
    p.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (default: leave torch\'s default)')
    p.add_argument('--precisions', nargs='+', default=list(PRECISIONS), choices=PRECISIONS,
                   help="fp32, and/or bf16 = torch.autocast bfloat16 (our Autocast callback for the learner)")
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'), help='cpu (measured) or cuda (untested so far)')
    p.add_argument('--which', nargs='+', default=list(CONTENDERS), choices=CONTENDERS, help='contenders to run')
    p.add_argument('--data', default='random', choices=('random', 'dsprites'),
                   help='random binary 64x64 images (default), or a random subset of dSprites (mpvae.dsprites.load_dsprites)')
    p.add_argument('--beta', type=float, default=4.0, help='beta of both paths (default 4)')
    p.add_argument('--lr', type=float, default=1e-3, help='Adam learning rate (default 1e-3)')
    p.add_argument('--latent-dims', type=int, nargs='+', default=[3, 9], help='latent size per path (default 3 9)')
    p.add_argument('--channels-last', default='none', choices=('none', 'ours', 'all'),
                   help="channels-last memory format (oneDNN's preferred layout on CPU) for no model (default), for ours "
                        "(bare and learner: what mpvae would ship), or for all three")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', default=None, help='write all results to this JSON file')
    p.add_argument('--verbose', action='store_true', help="let the frameworks print (progress bars, logs)")
    a = p.parse_args(argv)
    if a.iters < 1 or a.warmup < 1 or a.repeats < 1 or a.bs < 1:
        p.error('--iters, --warmup, --repeats and --bs must be >= 1 (warmup >= 1: the timed window starts after a batch)')
    if a.device == 'cuda' and not torch.cuda.is_available(): p.error('--device cuda: CUDA is not available here')
    return a


# ---------------------------------------------------------------------------------------------------- machine, load

def rss_mb() -> float|None:
    "Current resident set size of this process, MiB."
    try:
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('VmRSS:'): return round(int(line.split()[1]) / 1024, 1)
    except OSError: pass
    return None

def versions() -> dict:
    out = {'python': platform.python_version(), 'torch': torch.__version__}
    from importlib.metadata import version, PackageNotFoundError
    for dist in ('fastai', 'pythae', 'mpvae'):
        try: out[dist] = version(dist)
        except PackageNotFoundError: out[dist] = None
    return out


# ---------------------------------------------------------------------------------------------------- data, model

def make_images(a) -> torch.Tensor:
    "The one float32 tensor (N, 1, 64, 64) of {0, 1} images every contender trains on: exactly one epoch of batches."
    n = (a.warmup + a.iters) * a.bs
    if a.data == 'random':
        g = torch.Generator().manual_seed(a.seed)
        return (torch.rand(n, 1, 64, 64, generator=g) < 0.1).float()   # about dSprites' share of white pixels
    from mpvae.dsprites import load_dsprites
    ds = load_dsprites(progress=False)        # the official file or the render cache (rendered and cached if neither exists)
    idx = torch.randperm(len(ds), generator=torch.Generator().manual_seed(a.seed))[:n].sort().values
    return ds.images(idx).float().contiguous()

def model_config(a):
    from mpvae.model import MPVAEConfig
    return MPVAEConfig(latent_dims=tuple(a.latent_dims))   # the paper's 2-path dSprites net otherwise

def build_model(a, ours:bool=True):
    "The same freshly initialised MPVAE for every contender (seeded), in channels-last memory format if asked."
    from mpvae.core import set_seed
    from mpvae.model import MPVAE
    set_seed(a.seed)
    m = MPVAE(model_config(a))
    cl = a.channels_last == 'all' or (a.channels_last == 'ours' and ours)
    return m.to(memory_format=torch.channels_last) if cl else m

class Clock:
    """Called after every training batch; keeps the wall and process-CPU times at the end of the warm-up and at the end
    of the run. CPU time (all threads of this process) barely depends on other jobs when torch runs one thread: the
    number to compare on a busy machine (with several threads it also counts OpenMP spin-waiting)."""
    def __init__(self, warmup:int, total:int, device:torch.device):
        self.warmup, self.total, self.cuda, self.n, self.marks = warmup, total, device.type == 'cuda', 0, {}
    def tick(self):
        self.n += 1
        if self.n in (self.warmup, self.total):
            if self.cuda: torch.cuda.synchronize()
            self.marks[self.n] = (time.perf_counter(), time.process_time())
    def rates(self, iters:int, bs:int) -> tuple:
        "Images per second of wall time and of process CPU time over the timed window."
        if len(self.marks) != 2:
            raise RuntimeError(f"the run did {self.n} batches, expected {self.total}: the timing hook was not called after every batch")
        (w0, c0), (w1, c1) = self.marks[self.warmup], self.marks[self.total]
        return iters * bs / (w1 - w0), iters * bs / max(c1 - c0, 1e-9)

@contextlib.contextmanager
def quiet(verbose:bool):
    "Swallow what the frameworks print (progress bars, logs) unless --verbose; both get the same treatment."
    if verbose: yield; return
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf): yield


# ---------------------------------------------------------------------------------------------------- contenders

def run_bare(x, a, precision, dev):
    "The ceiling: slice batches out of the tensor, forward (autocast if bf16), our loss, backward, Adam step."
    from mpvae.loss import MPVAELoss
    model = build_model(a).to(dev).train()
    loss_fn = MPVAELoss(betas=a.beta).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(a.seed))
    total = a.warmup + a.iters
    clock = Clock(a.warmup, total, dev)
    t0 = time.perf_counter()
    for i in range(total):
        xb = x[perm[i*a.bs:(i+1)*a.bs]].to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=precision == 'bf16'):
            out = model(xb)
        loss = loss_fn(out, xb)              # the loss casts to float32 itself (as after our Autocast callback)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        clock.tick()
    if dev.type == 'cuda': torch.cuda.synchronize()
    return *clock.rates(a.iters, a.bs), time.perf_counter() - t0

def run_learner(x, a, precision, dev):
    "Our fastai Learner with its defaults (metrics, NaN guard, recorder, progress bar), `fit(1, lr)` (constant lr as the others)."
    from fastai.callback.core import Callback
    from mpvae.loader import array_dls
    from mpvae.train import mpvae_learner
    class _Tick(Callback):
        order = 1000                          # after every other callback's after_batch
        def __init__(self, clock): self.clock = clock
        def after_batch(self):
            if self.training: self.clock.tick()
    n = len(x)
    dls = array_dls(x, decode=None, train_idx=torch.arange(n), valid_idx=torch.arange(0), bs=a.bs, seed=a.seed, device=dev)
    total = a.warmup + a.iters
    clock = Clock(a.warmup, total, dev)
    with tempfile.TemporaryDirectory() as d:
        learn = mpvae_learner(dls, model=build_model(a), betas=a.beta, lr=a.lr,
                              precision=None if precision == 'fp32' else precision, cbs=[_Tick(clock)], path=d)
        with quiet(a.verbose):
            t0 = time.perf_counter()
            learn.fit(1, a.lr)
            if dev.type == 'cuda': torch.cuda.synchronize()
            fit_s = time.perf_counter() - t0
    return *clock.rates(a.iters, a.bs), fit_s

def pythae_model(a, dev):
    "A pythae `BetaVAE` whose encoder and decoder run our MPVAE's modules; pythae sees one latent z = z1 ++ z2."
    from pythae.models import BetaVAE, BetaVAEConfig
    from pythae.models.nn import BaseEncoder, BaseDecoder
    from pythae.models.base.base_utils import ModelOutput
    mp = build_model(a, ours=False)
    dims = list(mp.latent_dims)

    class Encoder(BaseEncoder):
        "Our encoder: trunk + one head per path; the per-path (mu, logvar) are concatenated into one Gaussian."
        def __init__(self):
            super().__init__()
            self.convs, self.enc_heads = mp.convs, mp.enc_heads       # registered here: pythae optimises/saves them
            object.__setattr__(self, '_mp', mp)                       # not registered: just for its methods
        def forward(self, x):
            mus, logvars = self._mp.encode_params(x)
            return ModelOutput(embedding=torch.cat(mus, 1), log_covariance=torch.cat(logvars, 1))

    class Decoder(BaseDecoder):
        "Our decoder: z is split back into (z1, z2); pythae's 'bce' loss wants probabilities, hence the sigmoid."
        def __init__(self):
            super().__init__()
            self.dec_heads, self.merge, self.up = mp.dec_heads, mp.merge, mp.up
            object.__setattr__(self, '_mp', mp)
        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self._mp.decode(list(z.split(dims, dim=1)))))

    cfg = BetaVAEConfig(input_dim=(1, 64, 64), latent_dim=sum(dims), reconstruction_loss='bce', beta=a.beta)
    return BetaVAE(cfg, encoder=Encoder(), decoder=Decoder())

def run_pythae(x, a, precision, dev):
    "pythae's BaseTrainer, default callbacks (tqdm bar, console printer), one epoch, no eval set, Adam at the same lr."
    if precision != 'fp32':
        raise NotImplementedError("pythae has no CPU autocast: its `amp` flag is torch.autocast('cuda') (fp16) and pythae "
                                  "switches it off for the 'bce' reconstruction loss")
    from pythae.trainers import BaseTrainer, BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback
    from pythae.data.datasets import BaseDataset
    for name in list(logging.root.manager.loggerDict):          # its INFO banners; warnings still show
        if name.startswith('pythae') and not a.verbose: logging.getLogger(name).setLevel(logging.WARNING)
    total = a.warmup + a.iters
    clock = Clock(a.warmup, total, dev)
    class _Tick(TrainingCallback):
        def on_train_step_end(self, training_config, **kwargs): clock.tick()
    model = pythae_model(a, dev)
    with tempfile.TemporaryDirectory() as d:
        cfg = BaseTrainerConfig(output_dir=d, per_device_train_batch_size=a.bs, per_device_eval_batch_size=a.bs, num_epochs=1,
                                learning_rate=a.lr, optimizer_cls='Adam', optimizer_params={'betas': (0.9, 0.999), 'eps': 1e-8},
                                seed=a.seed, no_cuda=dev.type != 'cuda')
        data = BaseDataset(x, torch.zeros(len(x)))
        with quiet(a.verbose):
            trainer = BaseTrainer(model, data, None, cfg, callbacks=[_Tick()])   # runs one sanity-check forward: untimed
            t0 = time.perf_counter()
            trainer.train()
            if dev.type == 'cuda': torch.cuda.synchronize()
            fit_s = time.perf_counter() - t0
    return *clock.rates(a.iters, a.bs), fit_s

RUNNERS = {'bare': run_bare, 'learner': run_learner, 'pythae': run_pythae}


# ---------------------------------------------------------------------------------------------------- driver

def _med(v): return statistics.median(v) if v else None

def benchmark(a) -> dict:
    if a.threads: torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    skipped, plan = {}, []
    for w in a.which:
        if w == 'pythae':
            try: import pythae  # noqa: F401
            except ImportError as e:
                skipped['pythae'] = f"pythae is not installed ({e}); `pip install -e '.[bench]'`"; continue
        for p in a.precisions:
            if w == 'pythae' and p != 'fp32':
                skipped[f'pythae/{p}'] = ("pythae has no CPU autocast: its `amp` flag is torch.autocast('cuda') (fp16) and "
                                          "pythae switches it off for the 'bce' reconstruction loss"); continue
            plan.append((w, p))
    info = {'date': datetime.datetime.now().astimezone().isoformat(timespec='seconds'), 'cpu': cpu_model(),
            'cores': os.cpu_count(), 'threads': torch.get_num_threads(), 'device': str(dev),
            'gpu': torch.cuda.get_device_name(0) if dev.type == 'cuda' else None, 'versions': versions(),
            'loadavg_before': loadavg()}
    x = make_images(a)
    import mpvae.model, mpvae.loss                                  # import everything up front: the runs then pay no imports
    if any(w == 'learner' for w, _ in plan): import mpvae.train
    if any(w == 'pythae' for w, _ in plan): import pythae.trainers, pythae.models
    w = torch.zeros(1, requires_grad=True); w.grad = torch.zeros(1)    # torch.optim's first step imports torch._dynamo
    torch.optim.Adam([w]).step()
    with torch.autocast(dev.type, dtype=torch.bfloat16): pass
    info['rss_mb_before_runs'] = rss_mb()         # libraries, lazy torch modules, data: peak_rss_mb minus this ~ what training adds
    keys = ('images_per_s', 'cpu_images_per_s', 'fit_images_per_s')
    res = {f'{w}/{p}': {k: [] for k in keys} for w, p in plan}
    total = a.warmup + a.iters
    for r in range(a.repeats):
        k = r % len(plan) if plan else 0
        for w, p in plan[k:] + plan[:k]:                     # rotate the order every round
            wall, cpu, fit_s = RUNNERS[w](x.to(dev) if w != 'pythae' else x, a, p, dev)
            v = res[f'{w}/{p}']
            v['images_per_s'].append(round(wall, 2)); v['cpu_images_per_s'].append(round(cpu, 2))
            v['fit_images_per_s'].append(round(total * a.bs / fit_s, 2))
            print(f"round {r+1}/{a.repeats}  {w+'/'+p:12s} {wall:8.1f} img/s wall  {cpu:8.1f} img/s of CPU time  "
                  f"{total * a.bs / fit_s:8.1f} img/s whole call   load {loadavg()}", flush=True)
    for v in res.values():
        for k in keys: v[k.replace('images_per_s', 'median')] = _med(v[k])
        v['min'], v['max'] = min(v['images_per_s']), max(v['images_per_s'])
    ratios = {}
    def ratio(name, num, den, target=None):
        if num not in res or den not in res: return
        ratios[name] = r = {'num': num, 'den': den}
        for clock, key in (('wall', 'images_per_s'), ('cpu', 'cpu_images_per_s')):
            paired = [n / d for n, d in zip(res[num][key], res[den][key])]
            r[clock] = {'median_of_rounds': round(_med(paired), 4), 'of_medians': round(_med(res[num][key]) / _med(res[den][key]), 4),
                        'rounds': [round(q, 4) for q in paired]}
        if target is not None: r['target'] = target
    for p in a.precisions: ratio(f'learner_over_bare_{p}', f'learner/{p}', f'bare/{p}', TARGETS['learner_over_bare'])
    ratio('learner_bf16_over_pythae_fp32', 'learner/bf16', 'pythae/fp32', TARGETS['ours_bf16_over_pythae_fp32'])
    ratio('bare_bf16_over_pythae_fp32', 'bare/bf16', 'pythae/fp32')
    ratio('learner_fp32_over_pythae_fp32', 'learner/fp32', 'pythae/fp32')
    ratio('bare_bf16_over_bare_fp32', 'bare/bf16', 'bare/fp32')
    ratio('pythae_fp32_over_bare_fp32', 'pythae/fp32', 'bare/fp32')
    info['loadavg_after'] = loadavg()
    return {'machine': info,
            'settings': {k: getattr(a, k) for k in ('iters', 'warmup', 'repeats', 'bs', 'threads', 'precisions', 'device',
                                                    'which', 'data', 'beta', 'lr', 'latent_dims', 'channels_last', 'seed')},
            'results': res, 'ratios': ratios, 'skipped': skipped, 'peak_rss_mb': peak_rss_mb()}

def report(out:dict) -> str:
    m, st = out['machine'], out['settings']
    lines = [f"# {m['date']}  {m['cpu']}  {m['cores']} cores, torch {m['versions']['torch']}, {m['threads']} threads, "
             f"device {m['device']}{' (' + m['gpu'] + ')' if m['gpu'] else ''}",
             f"# bs {st['bs']}, {st['warmup']} warm-up + {st['iters']} timed batches per run, {st['repeats']} rounds, data {st['data']}"
             f"{', channels-last for ' + st['channels_last'] if st['channels_last'] != 'none' else ''}",
             f"# load average (1, 5, 15 min) before {m['loadavg_before']}, after {m['loadavg_after']}",
             f"{'contender':14s} {'img/s wall':>11s} {'min':>8s} {'max':>8s} {'img/s CPU':>10s} {'whole call':>11s}   (medians over rounds)"]
    for k, v in out['results'].items():
        lines.append(f"{k:14s} {v['median']:11.1f} {v['min']:8.1f} {v['max']:8.1f} {v['cpu_median']:10.1f} {v['fit_median']:11.1f}")
    for k, r in out['ratios'].items():
        t = r.get('target')
        verdict = '' if t is None else f"  target >= {t}: wall {'PASS' if r['wall']['median_of_rounds'] >= t else 'FAIL'}, " \
                                       f"CPU {'PASS' if r['cpu']['median_of_rounds'] >= t else 'FAIL'}"
        lines.append(f"ratio {k:30s} wall {r['wall']['median_of_rounds']:.3f}  CPU {r['cpu']['median_of_rounds']:.3f}"
                     f"  (median of per-round ratios){verdict}")
    for k, why in out['skipped'].items(): lines.append(f"skipped {k}: {why}")
    lines.append(f"peak RSS of this process: {out['peak_rss_mb']} MiB (after imports and data, before the runs: "
                 f"{out['machine'].get('rss_mb_before_runs')} MiB)")
    return '\n'.join(lines)

def main(argv=None):
    a = parse_args(argv)
    out = benchmark(a)
    print(report(out))
    if a.json: write_json(a.json, out)
    return out

if __name__ == '__main__':
    main()
