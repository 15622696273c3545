#!/usr/bin/env python
"""Copy the longest snapshot that both models of a seed reached into the package (`mpvae/pretrained/`), for `mpvae.pretrained`.

    python tools/ship_pretrained.py [--runs runs/long] [--seeds 0 1 2]
    python tools/ship_pretrained.py --runs runs/long/lr1e-4 --setting lr1e-4   # -> dsprites_vae_lr1e-4_seed0.pth, ...

For each seed, the largest image count with both `vae_seed<s>/snap_<n>.pth` and `mpvae_seed<s>/snap_<n>.pth` is
copied as `mpvae/pretrained/dsprites_vae_seed<s>.pth` and `dsprites_mpvae_seed<s>.pth` (a baseline and an MPVAE
trained for the same number of images; with `--setting`, the names `mpvae.pretrained.pretrained_name` gives it). The files are `mpvae.model.save_model` files whose metadata holds the
training record that `tools/long_run.py` wrote. Then regenerate the report the CI test compares against:
`mpvae-tables --preset pretrained --tables dsprites --out results/pretrained` and copy its table and results.json
to `reports/dsprites_pretrained.md` / `.json` (see the README).
"""
import argparse, shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--runs', default=str(ROOT/'runs'/'long')); p.add_argument('--seeds', type=int, nargs='*')
    p.add_argument('--dest', default=str(ROOT/'mpvae'/'pretrained'), help='where the weights go (default: the package)')
    p.add_argument('--setting', default='', help="the training setting the names carry (e.g. 'lr1e-4'; see mpvae.pretrained.pretrained_name)")
    a = p.parse_args(argv)
    from mpvae.model import load_model
    from mpvae.pretrained import pretrained_name
    from learning_curves import snapshots
    try: pretrained_name('vae', a.setting)
    except ValueError as e: raise SystemExit(f"--setting: {e}")
    runs, dest = Path(a.runs), Path(a.dest)
    dest.mkdir(parents=True, exist_ok=True)
    pairs = snapshots(runs)   # (seed, images) -> (baseline, MPVAE) snapshot files: the pairing learning_curves evaluates
    seeds = a.seeds if a.seeds else sorted(int(d.name.split('seed')[1]) for d in runs.glob('vae_seed*') if d.is_dir())
    for s in seeds:
        common = [n for t, n in pairs if t == s]
        if not common: raise SystemExit(f"seed {s}: no image count with snapshots of both models under {runs}")
        k = max(common)
        srcs = dict(zip(('vae', 'mpvae'), pairs[(s, k)]))
        for src in srcs.values():   # refuse to ship a pair of which one file does not load
            try: load_model(src)
            except Exception as e: raise SystemExit(f"{src} does not load ({type(e).__name__}: {e}); nothing of seed {s} shipped")
        for m, src in srcs.items(): shutil.copyfile(src, dest/f'{pretrained_name(m, a.setting)}_seed{s}.pth')
        print(f"seed {s}: shipped the snapshots at {k:,} images")


if __name__ == '__main__':
    main()
