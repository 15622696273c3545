#!/usr/bin/env python
"""Repo upkeep: rewrite a `tools/long_run.py` state (`OUT/state.pth`, version 1) as a checkpoint of `mpvae-train --stop-images`.

The run then continues on the package's engine (`MPVAELearner.fit_images`) with the command this script prints. The
model, the optimizer, every random stream and the loader's generator are carried over unchanged; the history becomes
`CSVLog`'s rows (the old `history.csv`, with its speed columns, is kept as `history_long_run.csv`). One thing differs
by design: fastai's smoothed `train_loss` (a display value) is no longer reset at every chunk.

    python tools/convert_long_run.py runs/sched/lr1e-4_betas4-1/mpvae_seed2            # in place
    python tools/convert_long_run.py RUN --out /tmp/converted                            # into another folder
"""
from __future__ import annotations
import argparse, json, shutil, sys
from pathlib import Path

DIMS = {'vae': [12], 'baseline': [12], 'mpvae': [3, 9], 'mpvae3': [3, 3, 6]}   # long_run.py called the baseline 'vae'
TAPS = {'mpvae3': [3, 4, 5]}


def train_argv(cfg:dict, out:Path, images:int, layout:str='cl') -> list:
    "The `mpvae-train` arguments of the run `cfg` (a long_run.py config), trained to `images` in `layout` (cl or contig)."
    if cfg.get('schedule', 'const') != 'const': sys.exit('only constant-lr runs can continue (one-cycle runs keep no state)')
    dims = DIMS[cfg['model']]
    betas = cfg.get('betas') or [cfg['beta']] * len(dims)
    argv = ['--data', 'dsprites', '--valid-images', '4096', '--split-seed', '0', '--latent-dims', *map(str, dims),
            '--betas', *map(str, betas), '--lr', str(cfg['lr']), '--bs', str(cfg['bs']), '--precision', cfg['precision'],
            '--seed', str(cfg['seed']), '--chunk-images', str(cfg['chunk_images']), '--stop-images', str(images),
            '--warmup-images', str(cfg.get('warmup_images', 0)), '--layout', layout, '--out', str(out)]
    if cfg['model'] in TAPS: argv += ['--taps', *map(str, TAPS[cfg['model']])]
    return argv


def convert(run:Path, out:Path) -> list:
    "Write `out/state.pth` (and history.csv) from the long_run.py state in `run`; return the continuing command's argv."
    import torch
    from fastprogress.core import format_time
    from mpvae.train import Checkpoint, RunSpec, CSVLog, _legacy_globals, _set_rng_state
    from mpvae.distributed import _parser, build_learner
    with torch.serialization.safe_globals(_legacy_globals()):
        st = torch.load(run/'state.pth', map_location='cpu', weights_only=True)
    if 'cfg' not in st: sys.exit(f'{run}/state.pth is not a long_run.py state (already converted?)')
    cfg, hist = st['cfg'], st['history']
    k, chunk, bs = len(hist), cfg['chunk_images'], cfg['bs']
    out.mkdir(parents=True, exist_ok=True)
    argv = train_argv(cfg, out, k * chunk, hist[-1].get('layout') or 'contig')
    a = _parser().parse_args(argv)
    learn, spec = build_learner(a)
    learn.create_opt()
    learn.model.load_state_dict(st['model']); learn.opt.load_state_dict(st['opt'])
    ck = Checkpoint('state.pth'); learn.add_cbs([RunSpec(learn.run_spec(a.lr, chunk, spec)), ck])
    learn.dls.train.n = chunk
    learn.n_epoch, learn.train_iter, learn.pct_train = k, k * chunk // bs, 1.0
    names = ['train_loss', 'valid_loss', 'recon'] + [f'kl{i+1}' for i in range(len(DIMS[cfg['model']]))] + ['nelbo']
    rec = learn.recorder
    rec.lrs, rec.iters, rec.losses = [], [], []
    rec.values = [[h[n] for n in names] for h in hist]
    rec.smooth_loss.reset(); rec.smooth_loss.val = torch.tensor(0.)
    log = next(c for c in learn.cbs if isinstance(c, CSVLog))
    log.rows = [[str(i), *(repr(float(h[n])) for n in names), format_time(h['seconds']), str(h['images'])] for i, h in enumerate(hist)]
    _set_rng_state(st['rng'])
    ck.save(k, 0, st['dl'])
    if (run/'history.csv').exists() and not (out/'history_long_run.csv').exists():
        shutil.copy(run/'history.csv', out/'history_long_run.csv')
    import csv
    from mpvae.core import atomic_write
    with atomic_write(out/'history.csv', 'w') as f:
        w = csv.writer(f); w.writerow(['epoch', *names, 'time', 'images']); w.writerows(log.rows)
    return argv


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('run', type=Path, help='a folder holding a long_run.py state.pth')
    p.add_argument('--out', type=Path, default=None, help='where to write (default: the run folder itself)')
    a = p.parse_args(argv)
    out = a.out or a.run
    if out != a.run:
        for q in a.run.glob('snap_*.pth'):
            if not (out/q.name).exists(): out.mkdir(parents=True, exist_ok=True); shutil.copy(q, out/q.name)
    if (a.run/'config.json').exists() and out != a.run: out.mkdir(parents=True, exist_ok=True); shutil.copy(a.run/'config.json', out)
    cmd = convert(a.run, out)
    print('converted; continue with (a larger --stop-images extends the run):\n  mpvae-train ' + ' '.join(cmd))


if __name__ == '__main__':
    main()
