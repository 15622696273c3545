"""Worker for tests/test_distributed.py: real data-parallel MPVAE training, launched by `accelerate launch` (2 CPU processes, gloo),
or run as one process (`--single`) with the same global batch. Each scenario saves what the test compares under --out.

Scenarios (DDP mode):
  A  deterministic forward (posterior means, no sampling noise), Gaussian likelihood with a learned sigma (a loss parameter
     that DDP does not know about), 2 epochs; per rank: final weights, the items each rank saw in each epoch, the logged losses.
  B  bf16 autocast under DDP with csv_log, checkpoint and save_model, each rank given its *own* output folder: rank 1's must stay empty.
  C  sampling model, fp32, 2 epochs with checkpoints every 2 steps: an uninterrupted run, then a run that crashes at step 5 and a
     resumed run from its checkpoint; per rank: final weights of both, and one draw of the torch RNG after each.
Single mode: scenario A on one process with the global batch (2 x bs) made of the same items per step as the two ranks' batches.
"""
import argparse, json, os, sys
from pathlib import Path
import torch
from torch import nn
from fastai.data.core import DataLoaders
from fastai.callback.core import Callback
from mpvae.core import set_seed
from mpvae.loader import ArraySource, ArrayDataLoader
from mpvae.model import MPVAE, MPVAEConfig
from mpvae.train import mpvae_learner, Checkpoint
import mpvae.distributed  # noqa: F401  (MPVAELearner.to_distributed)

N, NV, BS, BITS = 96, 32, 8, 7       # train items, valid items, per-process batch, index bits stamped into each image
CFG = dict(img_size=16, latent_dims=(2, 3), trunk_channels=(8, 8), extra_channels=8, merge_channels=(8,))


def images(n, seed):
    "Random binary 16x16 images whose first BITS pixels of row 0 spell the item's index, so a batch says which items it holds."
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, 1, 16, 16, generator=g) > .5).to(torch.uint8)
    for i in range(n): x[i, 0, 0, :BITS] = torch.tensor([(i >> b) & 1 for b in range(BITS)], dtype=torch.uint8)
    return x


def item_ids(xb):
    bits = xb[:, 0, 0, :BITS].round().long()
    return (bits * (2 ** torch.arange(BITS))).sum(1).tolist()


class Interleaved(ArrayDataLoader):
    "One process, batch 2*BS: step k holds rank 0's k-th batch and rank 1's k-th batch of the same shuffled order."
    def _perm(self):
        p = super()._perm(); h, b = len(p) // 2, self.bs // 2
        return torch.cat([torch.cat([p[i:i + b], p[h + i:h + i + b]]) for i in range(0, h, b)])


def dls(single=False):
    x, xv = images(N, 0), images(NV, 1)
    dec = lambda r: r.float()
    cls, bs = (Interleaved, 2 * BS) if single else (ArrayDataLoader, BS)
    trn = cls(ArraySource(x, dec), bs=bs, shuffle=True, seed=0)
    val = ArrayDataLoader(ArraySource(xv, dec), bs=bs, shuffle=False)
    return DataLoaders(trn, val, device='cpu')


class MeanMPVAE(MPVAE):
    "Decodes the posterior means: no sampling noise, so one process and two can be compared step for step."
    def forward(self, x, sample=True): return super().forward(x, sample=False)


class Seen(Callback):
    def before_fit(self): self.epochs = []
    def before_train(self): self.epochs.append([])
    def before_batch(self):
        if self.training: self.epochs[-1] += item_ids(self.xb[0])


class Crash(Callback):
    def __init__(self, at): self.at = at
    def before_batch(self):
        if self.training and self.train_iter == self.at: raise KeyboardInterrupt('simulated crash')


def quiet_fit(learn, n, lr=1e-3):
    with learn.no_bar(), learn.no_logging(), learn.distrib_ctx(): learn.fit(n, lr)


def state(learn):
    sd = {k: v.detach().clone() for k, v in learn.model.state_dict().items()}
    sd.update({f'loss.{k}': v.detach().clone() for k, v in learn.loss_func.state_dict().items()})
    return sd


def scenario_a(out, rank, single=False):
    set_seed(0)
    model = MeanMPVAE(MPVAEConfig(**CFG))
    seen = Seen()
    learn = mpvae_learner(dls(single), model=model, loss_cfg=dict(recon='gaussian', learn_sigma=True), seed=None, cbs=[seen])
    quiet_fit(learn, 2)
    tag = 'single' if single else f'rank{rank}'
    torch.save(state(learn), out/f'A_{tag}.pt')
    names = learn.recorder.metric_names[1:-1]
    (out/f'A_{tag}.json').write_text(json.dumps(dict(seen=seen.epochs, log={n: float(v) for n, v in zip(names, learn.recorder.values[-1])})))


def scenario_b(out, rank):
    d = out/f'B_rank{rank}'          # a folder per rank: only rank 0 may write into its own
    learn = mpvae_learner(dls(), CFG, seed=0, precision='bf16', path=d, csv_log='history.csv', checkpoint='ckpt.pth')
    quiet_fit(learn, 1)
    learn.save_model(d/'model.pth')
    torch.save(state(learn), out/f'B_state_rank{rank}.pt')


def scenario_c(out, rank):
    d = out/'C'
    def make(resume=False, extra=()):
        return mpvae_learner(dls(), CFG, seed=0, path=d, checkpoint=Checkpoint('ckpt.pth', every_iters=2, resume=resume), cbs=list(extra))
    full = make(); quiet_fit(full, 2)
    torch.save(dict(sd=state(full), rng=torch.rand(3)), out/f'C_full_rank{rank}.pt')
    if rank == 0: (d/'ckpt.pth').unlink(missing_ok=True)   # the crashed run starts without the full run's checkpoint
    torch.distributed.barrier()
    crashed = make(extra=[Crash(at=5)])
    try: quiet_fit(crashed, 2)
    except KeyboardInterrupt: pass
    torch.distributed.barrier()
    resumed = make(resume=True); quiet_fit(resumed, 2)
    ck = [c for c in resumed.cbs if isinstance(c, Checkpoint)][0]
    torch.save(dict(sd=state(resumed), rng=torch.rand(3), resumed_from=ck.resumed_from), out/f'C_resumed_rank{rank}.pt')


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--out', required=True); ap.add_argument('--single', action='store_true')
    a = ap.parse_args()
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    if a.single: scenario_a(out, 0, single=True); sys.exit(0)
    rank = int(os.environ['RANK'])
    scenario_a(out, rank)
    scenario_b(out, rank)
    scenario_c(out, rank)
    (out/f'done_rank{rank}').write_text('ok')
