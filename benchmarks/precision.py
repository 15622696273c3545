"""bf16 autocast vs float32 for the paper's dSprites net (MPVAE z1=3, z2=9), trained with `mpvae_learner`.

Two questions, answered in one process so that both precisions see the same machine load:

1. Speed: median wall time of one training step (forward, float32 loss, backward, Adam step; fastai's own loop) in
   each precision. The precisions alternate (fp32, bf16, fp32, bf16, ...) over `--repeats` rounds; each round times
   `--steps` steps after `--warmup` untimed ones and gives one bf16/fp32 ratio. We print the median step time of each
   precision and the median (and range) of the per-round ratios.
2. Accuracy: from the same weights, Adam state and batches, train `--train-steps` steps in fp32 and in bf16, then
   evaluate both in float32 on the same held-out images with the same sampling noise. As a yardstick, a second fp32
   run differs from the first only in the reparameterisation noise: precision matters only if bf16 moves the loss more
   than that does. The shared start is a model already trained past the plateau (`--pretrain-until`): from the initial weights a
   VAE on sprites sits a few hundred steps on a plateau (it reconstructs the mean image) and the step at which it
   leaves it is chaotic (any perturbation, fp32 rounding included, moves it by tens of steps), which says nothing
   about precision. `--from-scratch` adds that comparison too.

Data: a random sample of dSprites images rendered with `mpvae.dsprites.render_classes` (no download needed).

    .venv/bin/python benchmarks/precision.py                 # defaults: bs 64, 1 thread, 5 rounds x 10 steps, shared start + 3 x 200 train steps
    .venv/bin/python benchmarks/precision.py --threads 2 --train-steps 0   # speed only
"""
import argparse, copy, platform, statistics as st, time
import numpy as np
import torch
from fastai.callback.core import Callback
from mpvae.core import set_seed
from mpvae.loader import array_dls
from mpvae.model import MPVAEOutput
from mpvae.train import mpvae_learner
from mpvae.dsprites import DSPRITES_FACTORS, render_classes

class StepTimer(Callback):
    "Wall time and process CPU time of every training batch (forward to optimizer step)."
    order = -20
    def __init__(self): self.times, self.cpu = [], []
    def before_batch(self):
        if self.training: self._t, self._c = time.perf_counter(), time.process_time()
    def after_batch(self):
        if self.training: self.times.append(time.perf_counter() - self._t); self.cpu.append(time.process_time() - self._c)

def make_dls(imgs, bs, n_valid, seed=0):
    n = len(imgs)
    return array_dls(imgs, decode=lambda r: r.float(), train_idx=torch.arange(n_valid, n), valid_idx=torch.arange(n_valid),
                     bs=bs, seed=seed, device='cpu')

def learner(dls, precision, timer=None):
    return mpvae_learner(dls, dict(latent_dims=(3, 9)), betas=(1., 1.), lr=1e-3, seed=0, precision=precision,
                         cbs=[timer] if timer else None)

def quiet(learn, n_epoch=1):
    with learn.no_bar(), learn.no_logging(): learn.fit(n_epoch)

@torch.no_grad()
def eval_fp32(model, x, seed=123, bs=256):
    "Mean negative ELBO (beta = 1) on `x` in float32, with a fixed sampling seed."
    from mpvae.loss import MPVAELoss
    lf, tot = MPVAELoss(), 0.
    g = torch.get_rng_state(); torch.manual_seed(seed)
    model.eval()
    for i in range(0, len(x), bs):
        xb = x[i:i+bs].float(); tot += lf(model(xb), xb).item() * len(xb)
    torch.set_rng_state(g)
    return tot / len(x)

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--bs', type=int, default=64)
    ap.add_argument('--threads', type=int, default=1, help='torch CPU threads (1 is steadier on a shared machine)')
    ap.add_argument('--repeats', type=int, default=5)
    ap.add_argument('--steps', type=int, default=10, help='timed steps per round and precision')
    ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--train-steps', type=int, default=200, help='steps of the accuracy comparison (0: skip it)')
    ap.add_argument('--pretrain-steps', type=int, default=1500, help='at most this many shared steps (batch 16) before the comparison')
    ap.add_argument('--pretrain-until', type=float, default=350., help='shared training stops once the held-out -ELBO is below this')
    ap.add_argument('--from-scratch', action='store_true', help='also compare from the initial weights')
    ap.add_argument('--n-images', type=int, default=None, help='dSprites images to render (default: enough for --train-steps without repeats)')
    args = ap.parse_args()
    n_valid = 1024
    if args.n_images is None: args.n_images = max(8192, args.train_steps * args.bs + n_valid)
    torch.set_num_threads(args.threads)
    flags = open('/proc/cpuinfo').read() if platform.system() == 'Linux' else ''
    bf16_isa = [f for f in ('avx512_bf16', 'amx_bf16') if f in flags]
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, bf16 instructions: "
          f"{', '.join(bf16_isa) or 'none found (bf16 is emulated: expect no speed-up)'}; {torch.get_num_threads()} thread(s); "
          f"batch {args.bs}. If the machine is shared, absolute times are inflated: compare the within-run ratios")
    classes = DSPRITES_FACTORS.sample_classes(args.n_images, np.random.default_rng(0))
    imgs = render_classes(classes).unsqueeze(1).to(torch.uint8)

    # 1. speed
    per = {'fp32': [], 'bf16': []}; cpu = {'fp32': [], 'bf16': []}; ratios = []
    learners = {}
    for p in per:
        dl = make_dls(imgs, args.bs, n_valid=args.bs)                  # one validation batch: keep rounds short
        dl.train.n = (args.warmup + args.steps) * args.bs
        t = StepTimer(); learners[p] = (learner(dl, None if p == 'fp32' else p, t), t)
    for r in range(args.repeats):
        med = {}
        for p, (l, t) in learners.items():
            t.times, t.cpu = [], []; quiet(l)
            med[p] = st.median(t.times[args.warmup:]); per[p] += t.times[args.warmup:]; cpu[p] += t.cpu[args.warmup:]
        ratios.append(med['fp32'] / med['bf16'])
        print(f"round {r+1}: fp32 {1e3*med['fp32']:.0f} ms/step, bf16 {1e3*med['bf16']:.0f} ms/step, speed-up {ratios[-1]:.2f}x")
    m32, m16 = st.median(per['fp32']), st.median(per['bf16'])
    print(f"SPEED  median step: fp32 {1e3*m32:.0f} ms ({1/m32:.2f} steps/s), bf16 {1e3*m16:.0f} ms ({1/m16:.2f} steps/s); "
          f"bf16 speed-up: median of rounds {st.median(ratios):.2f}x (range {min(ratios):.2f}-{max(ratios):.2f}), "
          f"ratio of medians {m32/m16:.2f}x")
    c32, c16 = st.median(cpu['fp32']), st.median(cpu['bf16'])
    print(f"CPU TIME  median per step (less sensitive to being descheduled by other jobs): fp32 {1e3*c32:.0f} ms, "
          f"bf16 {1e3*c16:.0f} ms, speed-up {c32/c16:.2f}x")

    # 2. accuracy after the same steps
    def compare(title, start=None):
        "Train --train-steps steps in fp32, bf16, and fp32 with other sampling noise, from `start` (model, opt state) or scratch."
        res = {}
        for name, p, noise in [('fp32', None, None), ('bf16', 'bf16', None), ('fp32, other noise', None, 1)]:
            dl = make_dls(imgs, args.bs, n_valid, seed=1 if start else 0)
            dl.train.n = args.train_steps * args.bs
            assert len(dl.train) == args.train_steps, 'not enough images for --train-steps'
            l = learner(dl, p)
            if start is not None:
                l.model.load_state_dict(start[0]); l.create_opt(); l.opt.load_state_dict(copy.deepcopy(start[1]))
            if noise is not None: torch.manual_seed(noise)      # same weights and batches, other reparameterisation noise
            t0 = time.perf_counter()
            quiet(l)
            res[name] = eval_fp32(l.model, imgs[:n_valid])
            print(f"  {name:>18}: {args.train_steps} steps in {time.perf_counter()-t0:.0f} s, smoothed train loss "
                  f"{float(l.recorder.losses[-1]):.2f}, held-out -ELBO (fp32 eval) {res[name]:.2f}")
        d16 = 100 * (res['bf16'] / res['fp32'] - 1); dn = 100 * (res['fp32, other noise'] / res['fp32'] - 1)
        print(f"ACCURACY ({title}) held-out -ELBO after {args.train_steps} more steps: bf16 vs fp32 {d16:+.2f}% "
              f"(fp32 with other sampling noise: {dn:+.2f}%)")

    if args.train_steps and args.from_scratch:
        print("from scratch (the first few hundred steps sit on the mean-image plateau; when each run leaves it is chaotic):")
        compare('from scratch')
    if args.train_steps:
        # a shared start past the plateau: bf16 steps of batch 16 (the cheapest way there) from the common initial weights,
        # 100 at a time, until the held-out -ELBO is below --pretrain-until (or --pretrain-steps are done)
        dl = make_dls(imgs, 16, n_valid)
        dl.train.n = 100 * 16
        pre = learner(dl, 'bf16'); t0 = time.perf_counter(); done = 0
        while done < args.pretrain_steps:
            quiet(pre); done += 100
            if (v := eval_fp32(pre.model, imgs[:n_valid])) < args.pretrain_until: break
        print(f"shared start: {done} steps of batch 16 in {time.perf_counter()-t0:.0f} s, held-out -ELBO {v:.2f} "
              f"({'past' if v < args.pretrain_until else 'NOT past'} the plateau); then, from the same weights and Adam state:")
        compare('from a shared trained start', (copy.deepcopy(pre.model.state_dict()), pre.opt.state_dict()))

if __name__ == '__main__':
    main()
