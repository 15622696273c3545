#!/usr/bin/env python
"""What our fastai Learner adds to a training batch, callback by callback, in CPU milliseconds.

A timing comparison (benchmarks/train_speed.py) on a shared machine resolves the Learner's overhead only to +-5%.
This counts it directly instead: it wraps fastai's `Callback.__call__` (every callback's handler of every event)
and our loader's batch production with `time.process_time()` and trains one epoch of `mpvae_learner`
(paper's 2-path net, defaults, bs 64) after a warm-up epoch. With one torch thread, process CPU time hardly depends
on other jobs. What is left of a batch is the model, the loss, backward, the optimizer step and fastai's own loop.

    python benchmarks/learner_overhead.py --precision bf16
    python benchmarks/learner_overhead.py --precision fp32 --batches 40
"""
import argparse, collections, contextlib, io, tempfile, time
import torch


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--precision', default='bf16', choices=('fp32', 'bf16'))
    p.add_argument('--batches', type=int, default=40, help='batches of the timed epoch (default 40)')
    p.add_argument('--bs', type=int, default=64)
    p.add_argument('--threads', type=int, default=1, help='torch threads (default 1: CPU time is then load-robust)')
    p.add_argument('--top', type=int, default=12)
    a = p.parse_args(argv)
    if a.batches < 1 or a.bs < 1: p.error('--batches and --bs must be >= 1')
    torch.set_num_threads(a.threads)
    from fastai.callback.core import Callback
    from mpvae.loader import array_dls, ArrayDataLoader
    from mpvae.model import MPVAE
    from mpvae.train import mpvae_learner

    cost = collections.Counter()
    orig_call, orig_batches = Callback.__call__, ArrayDataLoader._batches
    def timed_call(self, event_name):
        t = time.process_time()
        try: return orig_call(self, event_name)
        finally: cost[(type(self).__name__, event_name)] += time.process_time() - t
    def timed_batches(self, idxs):
        it = orig_batches(self, idxs)
        while True:
            t = time.process_time()
            try: b = next(it)
            except StopIteration: return
            finally: cost[('ArrayDataLoader', 'next batch')] += time.process_time() - t
            yield b
    Callback.__call__, ArrayDataLoader._batches = timed_call, timed_batches
    try:
        g = torch.Generator().manual_seed(0)
        x = (torch.rand(a.batches * a.bs, 1, 64, 64, generator=g) < 0.1).float()
        dls = array_dls(x, decode=None, train_idx=torch.arange(len(x)), valid_idx=torch.arange(0), bs=a.bs, seed=0, device='cpu')
        with tempfile.TemporaryDirectory() as d:
            torch.manual_seed(0)
            learn = mpvae_learner(dls, model=MPVAE(), betas=4., lr=1e-3, precision=None if a.precision == 'fp32' else a.precision, path=d)
            # the progress bar stays (its cost counts); only its text goes to a buffer
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                learn.fit(1, 1e-3)                                 # warm-up epoch
                cost.clear()
                t = time.process_time()
                learn.fit(1, 1e-3)
                total = time.process_time() - t
    finally:
        Callback.__call__, ArrayDataLoader._batches = orig_call, orig_batches
    n = len(dls.train)
    cbs = sum(v for k, v in cost.items() if k[0] != 'ArrayDataLoader')
    data = cost[('ArrayDataLoader', 'next batch')]
    print(f"{a.precision}, {a.threads} thread(s), bs {a.bs}: {1e3*total/n:.2f} ms of CPU per batch over {n} batches (whole fit)")
    print(f"  callbacks {1e3*cbs/n:.3f} ms/batch ({100*cbs/total:.2f}%), data {1e3*data/n:.3f} ms/batch ({100*data/total:.2f}%), "
          f"together {100*(cbs+data)/total:.2f}%")
    for (cb, ev), v in cost.most_common(a.top): print(f"  {1e3*v/n:8.3f} ms/batch  {100*v/total:5.2f}%  {cb}.{ev}")
    return {'ms_per_batch': 1e3*total/n, 'callbacks_ms': 1e3*cbs/n, 'data_ms': 1e3*data/n,
            'by_callback': {f'{cb}.{ev}': 1e3*v/n for (cb, ev), v in cost.items()}}

if __name__ == '__main__':
    main()
