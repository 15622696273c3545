#!/usr/bin/env python
"""Where the time of a training call goes, from a py-spy raw profile of benchmarks/train_speed.py.

    py-spy record -r 200 -f raw -o learner.txt -- python benchmarks/train_speed.py --which learner --precisions bf16 \\
        --iters 100 --warmup 3 --repeats 1 --threads 1
    python benchmarks/pyspy_breakdown.py learner.txt                 # the Learner's fit
    python benchmarks/pyspy_breakdown.py pythae.txt --inside train   # pythae's BaseTrainer.train

Every sample inside the training call is put in one bucket: the innermost frame that is the model's forward, the
loss, autograd's backward, the optimizer step, zero_grad or the data pipeline decides; what is left is the framework's
own per-batch work, attributed to the callback method that ran it (the frame after fastai's `Callback.__call__`) or
else to the innermost loop frame. Samples inside an import (lazy one-time imports) are left out. py-spy samples wall time while the process is runnable, so on a busy machine the
shares, not the absolute times, are what to read.
"""
import argparse, collections, re

BUCKETS = [  # (bucket, substring of a frame): searched from the innermost frame outwards, first match wins
    ('model forward', 'forward (mpvae/model.py'),
    ('loss', 'forward (mpvae/loss.py'), ('loss', 'loss_function (pythae/'),
    ('backward', 'backward (torch/_tensor.py'),
    ('optimizer step', 'step (fastai/optimizer.py'), ('optimizer step', '(torch/optim/'),
    ('zero_grad', 'zero_grad'),
    ('data', '(mpvae/core.py'), ('data', '(torch/utils/data/'), ('data', '(fastai/data/load.py'), ('data', '(pythae/data/'),
    ('pythae wrapper of our net', 'forward (train_speed.py'),
]
LOOPS = {'fit': 'fit (fastai/learner.py', 'train': 'train (pythae/trainers/base_trainer/base_trainer.py', 'bare': 'run_bare (train_speed.py'}

def bucket(stack):
    for f in reversed(stack):
        for name, sub in BUCKETS:
            if sub in f: return name
    return None

def owner(stack):
    idx = [i for i, f in enumerate(stack) if 'Callback.__call__ (fastai/callback/core.py' in f]
    if idx and idx[-1] + 1 < len(stack): return 'callback ' + stack[idx[-1] + 1].split(' (')[0]
    loop = [f for f in stack if re.search(r'\((fastai/learner.py|mpvae/train.py|pythae/trainers/)', f)]
    return 'loop ' + (loop[-1] if loop else stack[-1])

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('profile', help='py-spy record -f raw output')
    p.add_argument('--inside', default='fit', choices=sorted(LOOPS), help="the training call: fastai's fit, pythae's train, or the bare loop (whole run_bare, model set-up included)")
    p.add_argument('--top', type=int, default=15)
    a = p.parse_args(argv)
    rows = []
    for line in open(a.profile):
        stack, n = line.rstrip('\n').rsplit(' ', 1)
        rows.append((stack.split(';'), int(n)))
    rows = [(s, n) for s, n in rows if any(LOOPS[a.inside] in f for f in s)]
    # one-time lazy imports inside the call (e.g. torch.optim's first step imports torch._dynamo): not per-batch cost
    imports = sum(n for s, n in rows if any('_find_and_load' in f for f in s))
    rows = [(s, n) for s, n in rows if not any('_find_and_load' in f for f in s)]
    total = sum(n for _, n in rows)
    if not total: raise SystemExit(f"no samples inside {LOOPS[a.inside]!r}: wrong --inside?")
    buckets, owners = collections.Counter(), collections.Counter()
    for s, n in rows:
        b = bucket(s)
        if b is None: b = 'framework (callbacks, event dispatch, recorder, progress bar, ...)'; owners[owner(s)] += n
        buckets[b] += n
    print(f"{total} samples inside the training call ({imports} more in one-time imports, left out)")
    for k, v in buckets.most_common(): print(f"{100*v/total:6.2f}%  {k}")
    print("framework time by owner:")
    for k, v in owners.most_common(a.top): print(f"{100*v/total:6.2f}%  {k}")

if __name__ == '__main__':
    main()
