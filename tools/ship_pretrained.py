#!/usr/bin/env python
"""Copy the longest snapshot that both models of every seed reached into the package (`mpvae/pretrained/`), for `mpvae.pretrained`.

    python tools/ship_pretrained.py [--runs runs/long] [--seeds 0 1 2]
    python tools/ship_pretrained.py --runs runs/long/lr1e-4 --setting lr1e-4   # -> dsprites_baseline_lr1e-4_seed0/, ...
    python tools/ship_pretrained.py --runs runs/three --mpvae-only mpvae3 --setting lr1e-4_paths3-3-6 --images 3072000
        # MPVAEs only (their baselines ship under another setting): mpvae3_seed<s>/snap_3072000.pth -> dsprites_mpvae_lr1e-4_paths3-3-6_seed<s>/
    python tools/ship_pretrained.py --runs runs/celeba --data celeba   # -> celeba_baseline_seed<s>/, celeba_mpvae_seed<s>/

Every seed ships the same length: the largest image count at which both `baseline_seed<s>/snap_<n>.pth` (or the old `vae_seed<s>/`) and
`mpvae_seed<s>/snap_<n>.pth` exist for *every* seed (or `--images N`), written as the folders `mpvae/pretrained/dsprites_baseline_seed<s>/`
and `dsprites_mpvae_seed<s>/` (`MPVAE.save_pretrained`: safetensors weights, `config.json`, `meta.json`) (with `--setting`, the names `mpvae.pretrained.pretrained_name` gives it), so the
seed spread of the pretrained table is a spread over seeds, not over lengths. Every snapshot is loaded before any is
written: a bad snapshot ships nothing. `meta.json` holds the training record that the long run wrote (`mpvae-train --stop-images`, formerly `tools/long_run.py`). Then regenerate the report the CI test compares against:
`mpvae-tables --preset pretrained --tables dsprites --out results/pretrained`, then
`mpvae-report results/pretrained --name dsprites_pretrained` (`reports/dsprites_pretrained.md` / `.json`;
likewise `pretrained_lr1e-4` for `--setting lr1e-4`), and `make notebooks NBS=--stale` (10 and 14 use the weights).
"""
import argparse, os, shutil
from pathlib import Path
from mpvae.datasets import DEFAULT_DATA, data_names

ROOT = Path(__file__).resolve().parents[1]


def _write(model, folder:Path):
    "One shipped model: `MPVAE.save_pretrained` (safetensors weights, JSON config and training record)."
    model.save_pretrained(folder)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--runs', default=str(ROOT/'runs'/'long')); p.add_argument('--seeds', type=int, nargs='*')
    p.add_argument('--dest', default=str(ROOT/'mpvae'/'pretrained'), help='where the weights go (default: the package)')
    p.add_argument('--data', default=DEFAULT_DATA, choices=data_names(shipped=True), help='the dataset the runs trained on (the names start with it)')
    p.add_argument('--setting', default='', help="the training setting the names carry (e.g. 'lr1e-4'; see mpvae.pretrained.pretrained_name)")
    p.add_argument('--images', type=int, help='ship the snapshots at this image count (default: the longest every seed has)')
    p.add_argument('--mpvae-only', metavar='PREFIX', help='ship only the MPVAE runs PREFIX_seed<s>/ (their baselines ship under another setting)')
    a = p.parse_args(argv)
    from mpvae.model import load_model
    from mpvae.pretrained import pretrained_name
    from mpvae.curves import run_seeds, snapshots
    try: pretrained_name('baseline', a.setting, a.data)
    except (ValueError, TypeError) as e: raise SystemExit(f"--setting: {e}")
    runs, dest = Path(a.runs), Path(a.dest)
    if a.mpvae_only:   # (seed, images) -> (MPVAE snapshot,)
        pairs = {(s, int(q.stem.split('_')[1])): (q,) for s in run_seeds(runs, a.mpvae_only) for q in (runs/f'{a.mpvae_only}_seed{s}').glob('snap_*.pth')}
    else: pairs = snapshots(runs)   # (seed, images) -> (baseline, MPVAE) snapshot files: the pairing mpvae.curves evaluates
    seeds = a.seeds if a.seeds else run_seeds(runs, a.mpvae_only or 'baseline')
    if not seeds: raise SystemExit(f"no {a.mpvae_only or 'baseline'}_seed<s>/ folder under {runs}: give --runs the folder the long runs wrote into")
    have = {s: {n for t, n in pairs if t == s} for s in seeds}
    for s, ns in have.items():
        if not ns: raise SystemExit(f"seed {s}: no image count with snapshots of both models under {runs}")
    common = set.intersection(*have.values())
    k = a.images if a.images is not None else max(common, default=None)
    if k not in common:
        per_seed = '; '.join(f"seed {s}: {', '.join(f'{n:,}' for n in sorted(ns))}" for s, ns in have.items())
        why = f"--images {k:,}: not a pair for every seed" if k is not None else f"no image count has a pair for every seed {seeds}"
        raise SystemExit(f"{why}; pairs per seed: {per_seed}")
    models = {}
    for s in seeds:   # refuse the whole shipment if one file does not load
        for src in pairs[(s, k)]:
            try: models[src] = load_model(src)
            except Exception as e: raise SystemExit(f"{src} does not load ({type(e).__name__}: {e}); nothing shipped")
    dest.mkdir(parents=True, exist_ok=True)
    kinds = ('mpvae',) if a.mpvae_only else ('baseline', 'mpvae')
    todo = [(src, dest/f'{pretrained_name(m, a.setting, a.data)}_seed{s}') for s in seeds for m, src in zip(kinds, pairs[(s, k)])]
    part = lambda dst: dst.with_name(dst.name + '.part')   # the temporary name of a folder being shipped
    try:   # write everything under temporary names first, so a failed write (disk full) replaces nothing shipped
        for src, dst in todo: shutil.rmtree(part(dst), ignore_errors=True); _write(models[src], part(dst))
    except OSError as e:
        for _, dst in todo: shutil.rmtree(part(dst), ignore_errors=True)
        raise SystemExit(f"writing into {dest} failed ({e}); nothing shipped, the models there are unchanged")
    for _, dst in todo:
        if dst.exists(): shutil.rmtree(dst)
        os.replace(part(dst), dst)
        dst.with_suffix('.pth').unlink(missing_ok=True)   # the old format of the same model, if it shipped before
    print(f"seeds {', '.join(map(str, seeds))}: shipped the snapshots at {k:,} images")


if __name__ == '__main__':
    main()
