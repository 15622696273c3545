#!/usr/bin/env python
"""Train one dSprites model (the beta-VAE baseline or the paper's 2-path beta-MPVAE) for a long, resumable run.

Training goes in *chunks* of `--chunk-images` images (default 76,800 = 1,200 Adam steps at batch 64). After every
chunk the whole state (model, optimizer, every random stream, the loader's shuffling generator, the history) is
written atomically to `OUT/state.pth`; rerunning the same command continues exactly where the last chunk ended, so a
run may span several sessions (commit `state.pth`). After chunk 1, 2, 4, 8, ... (a log2 scale of images seen; 256
chunks = 307,200 steps, the reference protocol's 300k steps at batch 64) the model is also saved for evaluation as
`OUT/snap_<images>.pth` (`mpvae.model.load_model`). One line per chunk goes to stdout (once that chunk's state is saved: a run killed right after a line loses nothing)
and to `OUT/history.csv`.

    python tools/long_run.py --model vae --seed 0 --out runs/long/vae_seed0 --stop-images 3_000_000

Flush-to-zero of denormal floats is switched on before torch starts any thread (`--keep-denormals` to opt out):
late in training, denormal numbers in the backward pass slow a step by up to 40% on some CPUs.
"""
from __future__ import annotations
import argparse, csv, json, subprocess, sys, time
from pathlib import Path

MODELS = {'vae': [12], 'mpvae': [3, 9]}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--model', choices=sorted(MODELS), required=True, help='vae: z=12 baseline; mpvae: paths (3, 9)')
    p.add_argument('--seed', type=int, default=0, help='representation seed (weights and sampling noise)')
    p.add_argument('--beta', type=float, default=4.0)
    p.add_argument('--betas', type=float, nargs='+', default=None,
                   help='one beta per path (e.g. --betas 4 1 for the MPVAE), instead of --beta for every path')
    p.add_argument('--warmup-images', type=int, default=0,
                   help='KL warm-up: betas scaled linearly from 0 to 1 over this many images (counted over the whole run)')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--lr', type=float, default=1e-3, help='constant Adam lr, or the peak of --schedule one_cycle')
    p.add_argument('--schedule', choices=('const', 'one_cycle'), default='const',
                   help="const: resumable and extendable; one_cycle: fastai's fit_one_cycle over --stop-images (not resumable)")
    p.add_argument('--precision', choices=('fp32', 'bf16'), default='bf16')
    p.add_argument('--threads', type=int, default=None, help='torch threads (default: all cores)')
    p.add_argument('--layout', choices=('cl', 'contig'), default='cl',
                   help='channels-last (cl) or contiguous tensors; only the summation order differs, so a run may change '
                        'layout between sessions (each chunk records its layout). cl was 1.2x faster in fp32 on an AMD EPYC')
    p.add_argument('--chunk-images', type=int, default=76_800)
    p.add_argument('--stop-images', type=int, required=True, help='train until this many images were seen (rounded up to a chunk)')
    p.add_argument('--out', required=True)
    p.add_argument('--keep-denormals', action='store_true', help='do not flush denormal floats to zero')
    p.add_argument('--snap-now', action='store_true', help='write a snapshot of the saved state (snap_<images>.pth) and exit')
    a = p.parse_args(argv)
    if a.chunk_images % a.bs: p.error(f'--chunk-images ({a.chunk_images}) must be a multiple of --bs ({a.bs})')
    if a.stop_images < a.chunk_images: p.error('--stop-images must be at least one chunk')
    if a.betas is not None and len(a.betas) != len(MODELS[a.model]):
        p.error(f'--betas needs one value per path: {a.model} has {len(MODELS[a.model])}, got {len(a.betas)}')
    if a.warmup_images < 0: p.error('--warmup-images must be >= 0')
    return a


def main(argv=None):
    a = parse_args(argv)
    import torch
    if not a.keep_denormals: torch.set_flush_denormal(True)   # before the thread pool exists: its threads inherit the flag
    if a.threads: torch.set_num_threads(a.threads)
    torch.zeros(256, 256).sum()   # start the pool now, from this thread
    from mpvae.core import set_seed
    from mpvae.speed import cpu_name
    from mpvae.dsprites import load_dsprites, dsprites_dls
    from mpvae.train import mpvae_learner, BetaWarmup, _rng_state, _set_rng_state
    from mpvae.core import atomic_path, atomic_write
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    cfg = {k: getattr(a, k) for k in ('model', 'seed', 'beta', 'bs', 'lr', 'schedule', 'precision', 'chunk_images')}
    if a.betas is not None: cfg['betas'] = list(a.betas)          # only when given: older runs' cfg stays as it was
    if a.warmup_images: cfg['warmup_images'] = a.warmup_images
    betas = list(a.betas) if a.betas is not None else [a.beta]*len(MODELS[a.model])
    ds = load_dsprites(progress=False)
    dls = dsprites_dls(ds, bs=a.bs, valid_pct=min(0.01, 4096/len(ds)), seed=0, device='cpu')
    dls.train.n = a.chunk_images
    dims = MODELS[a.model]
    learn = mpvae_learner(dls, model_cfg=dict(latent_dims=tuple(dims)), betas=betas, lr=a.lr,
                          precision=None if a.precision == 'fp32' else a.precision, channels_last=a.layout == 'cl',
                          seed=a.seed, path=out)
    n_chunks = -(-a.stop_images // a.chunk_images)
    state_p, hist = out/'state.pth', []
    learn.create_opt()
    if state_p.exists():
        if a.schedule != 'const': sys.exit(f'{state_p} exists: a one_cycle run cannot resume; delete it to start over')
        st = torch.load(state_p, map_location='cpu', weights_only=False)
        if st['cfg'] != cfg: sys.exit(f'{state_p} was written with {st["cfg"]}, not {cfg}: use another --out')
        learn.model.load_state_dict(st['model']); learn.opt.load_state_dict(st['opt'])
        _set_rng_state(st['rng']); dls.train.load_state_dict(st['dl']); hist = st['history']
        print(f'resumed from {state_p} at {hist[-1]["images"]:,} images', flush=True)
    # the settings beside history.csv, so a run whose state and snapshots are not kept (one-cycle runs, comparisons) still
    # says how it was trained (`learning_curves.py compare` reads it)
    with atomic_write(out/'config.json', 'w') as f: json.dump(cfg, f, indent=1)
    if a.snap_now:
        if not hist: sys.exit(f'{state_p} does not exist: nothing to snapshot')
        _snap(learn, out, hist[-1]['images'], cfg, hist); print(f"wrote {out}/snap_{hist[-1]['images']}.pth"); return
    # fastai's train_iter restarts at every fit (every chunk): the ramp is told the batches of the chunks before it
    warm = BetaWarmup(iters=a.warmup_images / a.bs) if a.warmup_images else None
    if warm: learn.add_cb(warm)
    names = ['recon'] + [f'kl{k+1}' for k in range(len(dims))] + ['nelbo']

    def record(chunk, secs, vals):
        row = dict(chunk=chunk, images=chunk*a.chunk_images, train_loss=float(vals[0]), valid_loss=float(vals[1]),
                   **{n: float(v) for n, v in zip(names, vals[2:])}, seconds=round(secs, 2),
                   img_per_s=round(a.chunk_images/secs, 1), cpu_time=time.process_time(), layout=a.layout,
                   beta_weight=float(getattr(learn.loss_func, 'beta_weight', 1.)))
        hist.append(row)
        return (f"{a.model} seed {a.seed} chunk {chunk}/{n_chunks} images {row['images']:,} train {row['train_loss']:.2f} "
              f"valid nelbo {row['nelbo']:.2f} recon {row['recon']:.2f} "
              + ' '.join(f"{n} {row[n]:.2f}" for n in names[1:-1]) + f" | {row['img_per_s']:.0f} img/s")

    if a.schedule == 'one_cycle':
        prev = [time.time()]
        class _Rows(__import__('fastai').callback.core.Callback):
            order = 60   # after the Recorder has this chunk's values
            def after_epoch(self):   # one line per chunk as it ends (progress on a run of hours), none saved until the end
                now = time.time(); print(record(len(hist) + 1, now - prev[0], self.recorder.log[1:-1]), flush=True); prev[0] = now
        with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(n_chunks, a.lr, cbs=[_Rows()])
    else:
        start = len(hist)
        for c in range(start + 1, n_chunks + 1):
            if warm: warm.done = (c - 1) * a.chunk_images // a.bs
            t = time.time()
            with learn.no_bar(), learn.no_logging(): learn.fit(1, a.lr)
            line = record(c, time.time() - t, learn.recorder.log[1:-1])
            st = dict(cfg=cfg, model=learn.model.state_dict(), opt=learn.opt.state_dict(), rng=_rng_state(),
                      dl=dls.train.state_dict(), history=hist, cpu=cpu_name(), torch=str(torch.__version__))
            with atomic_path(state_p) as tmp: torch.save(st, tmp)
            _write_history(out, hist)
            if c & (c - 1) == 0 or c == n_chunks: _snap(learn, out, c*a.chunk_images, cfg, hist)
            print(line, flush=True)   # after the state is saved: a chunk's line on stdout means it survives a kill
    _write_history(out, hist)
    if a.schedule == 'one_cycle': _snap(learn, out, n_chunks*a.chunk_images, cfg, hist)


def _write_history(out, hist):
    from mpvae.core import atomic_write
    fields = list(dict.fromkeys(k for h in hist for k in h))   # rows of older sessions may lack later columns
    with atomic_write(out/'history.csv', 'w') as f:
        w = csv.DictWriter(f, fieldnames=fields, restval=''); w.writeheader(); w.writerows(hist)


def _commit():
    try: return subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()
    except OSError: return None


def _snap(learn, out, images, cfg, hist):
    import torch
    from mpvae.speed import cpu_name
    record = dict(cfg, images=images, steps=images//cfg['bs'], cpu=cpu_name(), torch=str(torch.__version__), commit=_commit(),
                  train_seconds=round(sum(h['seconds'] for h in hist), 1), last=hist[-1])
    learn.save_model(out/f'snap_{images}.pth', betas=cfg.get('betas', [cfg['beta']]*len(MODELS[cfg['model']])), seed=cfg['seed'],
                     train_images=images, record=record)


if __name__ == '__main__':
    main()
