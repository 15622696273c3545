#!/usr/bin/env python
"""Learning curves of the long dSprites runs (`tools/long_run.py`): probes, NELBO and active dimensions vs images seen.

    python tools/learning_curves.py evaluate [--runs runs/long]   # every snapshot pair not evaluated yet
    python tools/learning_curves.py report   [--runs runs/long] [--out reports]
    python tools/learning_curves.py compare runs/sched/* [--reference runs/long] [--images 307200] [--seeds 0 1] [--name dsprites_schedules]

`evaluate` takes each representation seed's baseline and MPVAE snapshots saved after the same number of images
(`runs/long/vae_seed<s>/snap_<images>.pth`, `runs/long/mpvae_seed<s>/snap_<images>.pth`), and runs the probes of the
paper's Table 2 on them exactly as the `paper` preset of `10_table_dsprites.ipynb` does (a seeded pool of 20,000 images
of the whole grid, 5 splits x 5 seeds of logistic regression on 10,000 training and 5,000 validation images, one probe
run over all four feature sets, so every feature set sees the same splits). It also records the validation NELBO,
reconstruction and KL per path that the run logged at that point, and the *active dimensions* per path: latent
dimensions whose mean KL(q(z_j|x) || N(0, 1)) over the pool exceeds 0.01 nats. Results go to
`runs/long/eval/seed<s>_<images>.json`. `report` turns them into `reports/dsprites_learning_curves.md` with figures.
`evaluate --baseline-evals DIR` probes the MPVAE snapshots alone and takes the baseline's rows from DIR's evaluation of
the same seed and length (a variant such as per-path betas, compared with a baseline whose snapshots were not kept).
"""
from __future__ import annotations
import argparse, functools, json, re, sys, time
from mpvae.tables import paired_t   # noqa: F401 (tests use lc.paired_t)
from pathlib import Path

LABELS = ['shape', 'scale', 'orientation', 'posX', 'posY']
FEATS = {'baseline': 'vae', 'z1': 'z1', 'z2': 'z2', 'z1+z2': 'z1+z2'}
ACTIVE_NATS = 0.01


def run_seeds(runs:Path, model:str='vae') -> list:
    "The seeds s that have a run folder `<model>_seed<s>/` under `runs` (long_run's naming; the baseline's by default), sorted."
    return sorted(int(m[1]) for d in runs.glob(f'{model}_seed*') if d.is_dir() and (m := re.fullmatch(rf'{model}_seed(\d+)', d.name)))


def snapshots(runs:Path) -> dict:
    "(seed, images) -> (vae snapshot, mpvae snapshot), for every image count both runs of a seed saved."
    out = {}
    for s in run_seeds(runs):
        d, md = runs/f'vae_seed{s}', runs/f'mpvae_seed{s}'
        for p in d.glob('snap_*.pth'):
            q = md/p.name
            if q.exists(): out[(s, int(p.stem.split('_')[1]))] = (p, q)
    return dict(sorted(out.items()))


@functools.lru_cache(maxsize=None)
def _state(run:Path) -> dict|None:
    "A tools/long_run.py state.pth (version 1), read once; None if the run has none or its state is the engine's."
    import torch
    from mpvae.train import _legacy_globals
    if not (run/'state.pth').exists(): return None
    with torch.serialization.safe_globals(_legacy_globals()):
        st = torch.load(run/'state.pth', map_location='cpu', weights_only=True)
    return st if 'cfg' in st else None   # an mpvae-train checkpoint: history.csv and config.json say it all


def _read_csv(p:Path) -> list:
    import csv
    with open(p) as f:
        rows = [{k: (_num(v) if k not in ('layout', 'time') and v != '' else v) for k, v in r.items()} for r in csv.DictReader(f)]
    prev = 0
    for r in rows:
        r['images'] = int(r['images']); r['chunk'] = int(r['chunk']) if 'chunk' in r else int(r['epoch']) + 1
        if 'img_per_s' not in r and isinstance(r.get('time'), str) and r['time']:   # CSVLog's epoch time, m:ss or h:mm:ss
            sec = sum(float(x) * 60**k for k, x in enumerate(reversed(r['time'].split(':'))))
            r['img_per_s'] = (r['images'] - prev) / sec if sec > 0 else float('nan')
        prev = r['images']
    return rows


def _num(v):
    try: return float(v)
    except ValueError: return v


@functools.lru_cache(maxsize=None)
def _csv_history(run:Path) -> list:
    "history.csv (long_run.py's columns, or CSVLog's); a converted run's earlier rows come from history_long_run.csv."
    rows = _read_csv(run/'history.csv')
    if (run/'run.json').exists():   # mpvae-train's record: the layout CSVLog's rows do not carry
        cl = (json.loads((run/'run.json').read_text()).get('precision') or {}).get('channels_last')
        for r in rows: r.setdefault('layout', 'cl' if cl else 'contig')
    if (run/'history_long_run.csv').exists():
        old = _read_csv(run/'history_long_run.csv')
        rows = old + [r for r in rows if r['images'] > old[-1]['images']]
    return rows


def run_history(run:Path) -> list:
    "The rows a run logged, one per chunk (from state.pth; a one-cycle run, which keeps no state.pth, from history.csv)."
    st = _state(run)
    return st['history'] if st is not None else _csv_history(run)


def _history_row(snap:Path, images:int) -> dict:
    "The row a run logged after `images` images."
    rows = [r for r in run_history(snap.parent) if r['images'] == images]
    return rows[0] if rows else {}


def baseline_pairs(runs:Path, base_evals:Path) -> dict:
    "(seed, images) -> (None, mpvae snapshot), for every MPVAE snapshot under `runs` whose baseline `base_evals` has evaluated."
    out = {}
    for s in run_seeds(runs, 'mpvae'):
        for q in (runs/f'mpvae_seed{s}').glob('snap_*.pth'):
            n = int(q.stem.split('_')[1])
            if (base_evals/f'seed{s}_{n}.json').exists(): out[(s, n)] = (None, q)
    return dict(sorted(out.items()))


def evaluate_pair(seed:int, images:int, vae_p:Path|None, mp_p:Path, ds, pool, base:dict|None=None, probe:str='logreg') -> dict:
    "Probe one snapshot pair; with `vae_p=None` the baseline's rows, active dims and history come from `base`, its earlier evaluation."
    import numpy as np, torch
    from mpvae.model import load_model
    from mpvae.probe import encode_dataset, feature_sets, run_probe
    from mpvae.experiment import table_rows, table_results
    from mpvae.disentangle import kl_per_dim
    y = np.stack([ds.labels(l)[pool] for l in LABELS], 1)
    t = time.time()
    vae, mp = (load_model(vae_p) if base is None else None), load_model(mp_p)
    feats = feature_sets(encode_dataset(mp, ds.images, pool, progress=False))
    if base is None: feats = {'vae': np.concatenate(encode_dataset(vae, ds.images, pool, progress=False), 1), **feats}
    # one probe run: every feature set sees the same splits and classifier seeds, each probed on its own, so a
    # baseline probed earlier with the same settings (`base`) has the rows a joint run would give it
    pr = run_probe(feats, y, LABELS, train_size=10_000, valid_size=5_000, n_splits=5, n_seeds=1 if probe == 'logreg_cv' else 5,
                   kind=probe, split_seed=0, seed=100*seed)
    rows = table_rows([pr], {k: f for k, f in FEATS.items() if f in feats})
    if base is not None: rows = {'baseline': base['rows']['baseline'], **rows}
    res = table_results('dsprites', rows, [pr], dict(seed=seed, images=images))
    active = {k: v for k, v in (base or {}).get('active', {}).items() if k.startswith('vae/')}
    kl_dims = {k: v for k, v in (base or {}).get('kl_per_dim', {}).items() if k.startswith('vae/')}
    with torch.no_grad():
        for name, m in (('vae', vae), ('mpvae', mp)):
            if m is None: continue
            mus, lvs = [], []
            for i in range(0, len(pool), 2048):
                mu, lv = m.encode_params(ds.images(pool[i:i+2048]))
                mus.append([t_.numpy() for t_ in mu]); lvs.append([t_.numpy() for t_ in lv])
            for k in range(m.n_paths):
                kl = kl_per_dim(np.concatenate([b[k] for b in mus]), np.concatenate([b[k] for b in lvs]))
                key = 'z' if name == 'vae' else f'z{k+1}'
                kl_dims[f'{name}/{key}'] = [round(float(v), 4) for v in kl]
                active[f'{name}/{key}'] = int((kl > ACTIVE_NATS).sum())
    hist = {'vae': _history_row(vae_p, images) if base is None else base['history']['vae'], 'mpvae': _history_row(mp_p, images)}
    rec = {'vae': vae.meta.get('record') if base is None else base['records']['vae'], 'mpvae': mp.meta.get('record')}
    out = dict(seed=seed, images=images, rows=rows, ordering=res['ordering'], chance=res['chance'], majority=res['majority'],
               active=active, kl_per_dim=kl_dims, history=hist, records=rec, probe=dict(pr.params), seconds=round(time.time() - t, 1))
    return out if base is None else {**out, 'baseline_from': base['source']}


def cmd_evaluate(a):
    import numpy as np
    from mpvae.core import atomic_write
    from mpvae.dsprites import load_dsprites
    runs = Path(a.runs); ev = runs/EVAL_DIRS[a.probe]; ev.mkdir(parents=True, exist_ok=True)
    base_ev = Path(a.baseline_evals) if a.baseline_evals else None
    if base_ev is not None and not base_ev.is_dir(): raise SystemExit(f"--baseline-evals {base_ev}: no such folder (give the eval/ folder of the baseline's runs)")
    pairs = snapshots(runs) if base_ev is None else baseline_pairs(runs, base_ev)
    todo = {k: v for k, v in pairs.items() if (a.force or not (ev/f'seed{k[0]}_{k[1]}.json').exists())
            and (not a.images or k[1] in a.images)}
    print(f"{len(pairs)} snapshot pairs, {len(todo)} to evaluate", flush=True)
    if not todo: return
    ds = load_dsprites(progress=False)
    pool = np.sort(np.random.default_rng(12345).choice(len(ds), size=20_000, replace=False))   # the paper preset's pool
    for (s, n), (vp, mp) in todo.items():
        base = None
        if base_ev is not None:
            f = base_ev/f'seed{s}_{n}.json'; base = {**json.loads(f.read_text()), 'source': str(f)}
        r = evaluate_pair(s, n, vp, mp, ds, pool, base, a.probe)
        with atomic_write(ev/f'seed{s}_{n}.json', 'w') as f: json.dump(r, f, indent=1)
        o = r['ordering']
        print(f"seed {s} images {n:,}: baseline {r['rows']['baseline']['mean']['mean']:.2f}  z1 {r['rows']['z1']['mean']['mean']:.2f}  "
              f"z2 {r['rows']['z2']['mean']['mean']:.2f}  z1+z2 {r['rows']['z1+z2']['mean']['mean']:.2f}  -> {o['verdict']} "
              f"({o['diff']:+.2f} +- {o['se']:.2f}); active {r['active']}  [{r['seconds']:.0f} s]", flush=True)


def _lr(lr:float) -> str:
    "A learning rate as the report names its setting, e.g. 'lr 1e-4'."
    return f"lr {lr:.0e}".replace('e-0', 'e-')


def _line(r:dict) -> str:
    "The training setting an evaluation's pair of runs shares, e.g. 'lr 1e-3' (the lines of the report)."
    c = r.get('records', {}).get('vae') or {}
    txt = _lr(c.get('lr', 1e-3))
    if c.get('schedule', 'const') != 'const': txt += f" {c['schedule']}"
    if c.get('bs', 64) != 64: txt += f" bs {c['bs']}"
    m = r.get('records', {}).get('mpvae') or {}   # what only the MPVAE of the pair varies
    if m.get('betas'): txt += ' betas (' + ', '.join(f'{b:g}' for b in m['betas']) + ')'
    if m.get('warmup_images'): txt += f" warm-up {m['warmup_images']:,}"
    return txt


EVAL_DIRS = {'logreg': 'eval', 'logreg_cv': 'eval_cv'}   # one folder of evaluations per probe
PROBE_TEXT = {'logreg': "Probes: the earlier `paper` preset's protocol (20,000-image pool, 5 splits x 5 seeds of logistic regression "
                        "at a fixed C = 1, 10,000 train / 5,000 validation images).",
              'logreg_cv': "Probes: the `paper` preset's protocol (20,000-image pool, 5 splits of logistic regression with C chosen by "
                           "5-fold cross-validation on the training rows from logspace(-4, 4, 10), as disentanglement_lib; 10,000 "
                           "train / 5,000 validation images)."}


def load_evals(*runs:Path, sub:str='eval') -> list:
    "Every evaluation under `runs/<sub>` (eval: the C = 1 probe, eval_cv: the cross-validated one), tagged with its line."
    evals = [json.loads(p.read_text()) for d in runs for p in (Path(d)/sub).glob('seed*_*.json')]
    for r in evals: r['line'] = _line(r)
    return sorted(evals, key=lambda r: (r['line'], r['images'], r['seed']))


def plot_curves(evals:list, out:Path, prefix:str='dsprites_lc') -> list:
    import numpy as np, matplotlib
    matplotlib.use('Agg'); import matplotlib.pyplot as plt
    from mpvae.experiment import save_fig
    from mpvae.tables import PAPER
    series = sorted({(r['line'], r['seed']) for r in evals}); figs = []
    lines_ = sorted({r['line'] for r in evals}); styles = dict(zip(lines_, ['-', '--', ':', '-.']))
    cols = {'baseline': 'C0', 'z1': 'C1', 'z2': 'C2', 'z1+z2': 'C3'}
    # 1. accuracy vs images, mean over labels and per label
    fig, axs = plt.subplots(1, 6, figsize=(20, 3.4), sharex=True)
    for j, lab in enumerate(LABELS + ['mean']):
        ax = axs[j]
        for key, c in cols.items():
            for ln, s in series:
                rs = [r for r in evals if (r['line'], r['seed']) == (ln, s)]
                x = [r['images'] for r in rs]
                v = [r['rows'][key]['acc'][lab]['mean'] if lab != 'mean' else r['rows'][key]['mean']['mean'] for r in rs]
                e = [r['rows'][key]['mean']['std_runs'] if lab == 'mean' else r['rows'][key]['acc'][lab]['std_runs'] for r in rs]
                ax.errorbar(x, v, yerr=e, color=c, marker='o', ms=3, lw=1, ls=styles[ln], capsize=2,
                            label=f'{key} ({ln})' if s == series[0][1] else None)
            p = PAPER['dsprites']['acc'][key].get(lab)
            if p is not None: ax.axhline(p, color=c, ls=':', lw=1)
        ch = np.mean(list(evals[0]['chance'].values())) if lab == 'mean' else evals[0]['chance'][lab]
        ax.axhline(100*ch, color='k', ls='--', lw=0.8)
        ax.set_xscale('log'); ax.set_title(lab); ax.set_xlabel('images seen'); ax.grid(alpha=0.3)
    axs[0].set_ylabel('probe accuracy (%)'); axs[-1].legend(fontsize=7)
    fig.suptitle('Probe accuracy vs training length (' + ', '.join(f"{styles[l]!r}: {l}" for l in lines_)
                 + '; dotted horizontal: the paper; black dashed: chance; bars: std over the probe runs)', fontsize=10)
    fig.tight_layout(); figs.append(save_fig(fig, out/f'{prefix}_accuracy.png'))
    # 2. NELBO / recon vs images, 3. active dims per path
    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(15, 3.4))
    for ln, s in series:
        rs = [r for r in evals if (r['line'], r['seed']) == (ln, s)]; x = [r['images'] for r in rs]
        first, st = s == series[0][1], 'o' + styles[ln]
        for m, c in (('vae', 'C0'), ('mpvae', 'C3')):
            a1.plot(x, [r['history'][m].get('nelbo', np.nan) for r in rs], st, color=c, ms=3, label=f'{m} NELBO ({ln})' if first else None)
        a2.plot(x, [r['history']['vae'].get('kl1', np.nan) for r in rs], st, color='C0', ms=3, label=f'baseline ({ln})' if first else None)
        a2.plot(x, [r['history']['mpvae'].get('kl1', np.nan) for r in rs], st, color='C1', ms=3, label=f'MPVAE z1 ({ln})' if first else None)
        a2.plot(x, [r['history']['mpvae'].get('kl2', np.nan) for r in rs], st, color='C2', ms=3, label=f'MPVAE z2 ({ln})' if first else None)
        for k, c in (('vae/z', 'C0'), ('mpvae/z1', 'C1'), ('mpvae/z2', 'C2')):
            a3.plot(x, [r['active'][k] for r in rs], st, color=c, ms=3, label=f'{k} ({ln})' if first else None)
    for ax, t, yl in ((a1, 'validation NELBO (nats/image)', 'nats'), (a2, 'KL per path (validation)', 'nats'),
                      (a3, f'active dimensions (mean KL > {ACTIVE_NATS} nats)', 'dims')):
        ax.set_xscale('log'); ax.set_xlabel('images seen'); ax.set_title(t, fontsize=9); ax.set_ylabel(yl); ax.grid(alpha=0.3); ax.legend(fontsize=7)
    a3.set_ylim(0, 12.5)
    fig.tight_layout(); figs.append(save_fig(fig, out/f'{prefix}_nelbo_active.png'))
    figs.append(plot_verdict(evals, out, styles, prefix))
    return figs


def mean_diffs(evals:list, line:str) -> tuple:
    """z1+z2 - baseline averaged over seeds at each length of `line`: ({images: mean} over every seed of the line, at the
    lengths all of them reached; {images: (mean, seeds)} where two or more but not all did). One fixed set of seeds for
    the first, so its line cannot jump where the set of seeds changes; a line with one seed is that seed's."""
    import numpy as np
    seeds = {r['seed'] for r in evals if r['line'] == line}
    at = {}
    for r in evals:
        if r['line'] == line: at.setdefault(r['images'], {})[r['seed']] = r['ordering']['diff']
    full = {x: float(np.mean(list(d.values()))) for x, d in sorted(at.items()) if set(d) == seeds}
    some = {x: (float(np.mean(list(d.values()))), sorted(d)) for x, d in sorted(at.items()) if 1 < len(d) < len(seeds)}
    return full, some


def plot_verdict(evals:list, out:Path, styles:dict, prefix:str='dsprites_lc') -> Path:
    "z1+z2 - baseline vs images: each seed (thin, bars: 2 se over probe runs), the mean over seeds (thick), the paper."
    import numpy as np, matplotlib.pyplot as plt
    from mpvae.experiment import save_fig
    from mpvae.tables import PAPER
    fig, ax = plt.subplots(figsize=(7, 4)); cols = dict(zip(sorted(styles), ['C0', 'C3', 'C2', 'C4']))
    for ln in sorted(styles):
        seeds = sorted({r['seed'] for r in evals if r['line'] == ln})
        for s in seeds:
            rs = [r for r in evals if (r['line'], r['seed']) == (ln, s)]
            ax.errorbar([r['images'] for r in rs], [r['ordering']['diff'] for r in rs], yerr=[2*r['ordering']['se'] for r in rs],
                        color=cols[ln], ls=styles[ln], lw=0.8, alpha=0.6, marker='.', capsize=2)
        full, some = mean_diffs(evals, ln)
        ax.plot(list(full), list(full.values()), color=cols[ln], ls=styles[ln], lw=2.5, marker='o',
                label=f"{ln}: seed {seeds[0]}" if len(seeds) == 1 else f"{ln}: mean over seeds {', '.join(map(str, seeds))}")
        if some:
            ax.plot(list(some), [m for m, _ in some.values()], color=cols[ln], ls='none', marker='o', mfc='none', ms=8, mew=1.5,
                    label=f"{ln}: mean over the seeds that reached it ("
                          + '; '.join(f"{x/1e6:.2f} M: seeds {', '.join(map(str, ss))}" for x, (_, ss) in some.items()) + ')')
    p = PAPER['dsprites']['acc']
    ax.axhline(p['z1+z2']['mean'] - p['baseline']['mean'], color='k', ls=':', lw=1, label='the paper (Table 2)')
    ax.axhline(0, color='k', lw=0.8)
    ax.set_xscale('log'); ax.set_xlabel('images seen'); ax.set_ylabel('z1+z2 - baseline (points)'); ax.grid(alpha=0.3)
    ax.set_title('The paper\'s claim vs training length: above 0 = z1+z2 beats the baseline', fontsize=10)
    ax.legend(fontsize=7); fig.tight_layout()
    return save_fig(fig, out/f'{prefix}_verdict.png')


def over_seeds(evals:list) -> dict:
    "(line, images) -> the evaluations of every seed combined (`mpvae.tables.combine_seeds`), where two or more seeds exist."
    from mpvae.tables import combine_seeds
    groups = {}
    for r in evals: groups.setdefault((r['line'], r['images']), []).append(r)
    as_res = lambda r: dict(table='dsprites', labels=LABELS, rows=r['rows'], chance=r['chance'], majority=r['majority'],
                            params=dict(rep_seeds=[r['seed']]))
    return {k: combine_seeds([as_res(r) for r in rs]) for k, rs in groups.items() if len({r['seed'] for r in rs}) > 1}


def seed_md(evals:list) -> list:
    "The verdict against the spread over representation seeds: one row per setting and length with two or more seeds."
    comb = over_seeds(evals)
    if not comb: return []
    lines = ['', '## Over representation seeds', '',
             'Each seed trains its own baseline and MPVAE. Mean ± std over the seeds of each feature set\'s mean accuracy; the '
             'verdict\'s standard error is now over seeds (sqrt(s_a^2/n + s_b^2/n)), the spread that matters for the claim. '
             'z1+z2 - baseline is also taken seed by seed ("per seed"); its column gives the mean difference ± the unpaired '
             'standard error (the verdict\'s) / the paired one, and the paired t statistic on n - 1 degrees of freedom (with '
             '3 seeds, t > 2.92 is p < 0.05 one-sided, t > 4.30 p < 0.05 two-sided).', '',
             '| setting | images | seeds | baseline | z1 | z2 | z1+z2 | z1+z2 - baseline ± se unpaired / paired (t) | per seed | verdict |',
             '|---|---:|---|---:|---:|---:|---:|---:|---|---|']
    for (ln, n), c in sorted(comb.items()):
        m = {k: c['rows'][k]['mean'] for k in FEATS}; o = c['ordering']
        paired = [a - b for a, b in zip(m['z1+z2']['per_seed'], m['baseline']['per_seed'])]
        _, pse, t = paired_t(paired)
        lines.append(f"| {ln} | {n:,} | {', '.join(map(str, c['params']['rep_seeds']))} | "
                     + ' | '.join(f"{m[k]['mean']:.2f} ± {m[k]['std_seeds']:.2f}" for k in FEATS)
                     + f" | {o['diff']:+.2f} ± {o['se']:.2f} / {pse:.2f} (t {t:.2f}) | "
                     + f"{', '.join(f'{d:+.2f}' for d in paired)} | {o['verdict']} |")
    return lines


def plateau_md(evals:list) -> list:
    "The plateau criterion per setting and seed: how much the latest doubling of images moved the baseline (and NELBO)."
    rows = []
    for ln, seed in sorted({(r['line'], r['seed']) for r in evals}):
        rs = {r['images']: r for r in evals if (r['line'], r['seed']) == (ln, seed)}
        last = max((n for n in rs if n % 2 == 0 and n // 2 in rs), default=None)   # the longest length whose half was probed too
        if last is None: continue
        a, b = rs[last // 2], rs[last]
        d = b['rows']['baseline']['mean']['mean'] - a['rows']['baseline']['mean']['mean']
        dn = {m: b['history'][m].get('nelbo', float('nan')) - a['history'][m].get('nelbo', float('nan')) for m in ('vae', 'mpvae')}
        rows.append(f"| {ln} | {seed} | {last//2:,} -> {last:,} | {d:+.2f} | {'met' if abs(d) < 1 else 'not met'} | "
                    f"{dn['vae']:+.2f} / {dn['mpvae']:+.2f} |")
    if not rows: return []
    return ['', '## Plateau: the latest doubling of each run', '',
            'The stopping criterion of these runs: doubling the images moves the baseline\'s mean probe accuracy by less than 1 point. '
            'Each row is the longest doubling probed for that seed.', '',
            '| setting | seed | images | baseline mean accuracy change | criterion | NELBO change baseline / MPVAE (nats) |',
            '|---|---:|---|---:|---|---|'] + rows


def doublings(rows:list, key:str='nelbo', start:int=307_200, window:int=3) -> list:
    "(n, 2n, change of `key`) for each doubling of images from `start` the run reached; each value the mean of the `window` chunks ending there."
    import numpy as np
    n = np.array([r['images'] for r in rows]); y = np.array([r.get(key, np.nan) for r in rows], float)
    at = lambda x: y[max(0, i - window + 1):i + 1].mean() if (i := int(np.searchsorted(n, x))) < len(n) and n[i] == x else np.nan
    out, x = [], start
    while 2*x <= n.max(initial=0): out.append((x, 2*x, float(at(2*x) - at(x)))); x *= 2
    return out


def nelbo_md(runs:list) -> list:
    "How fast each run's validation NELBO still falls: its change over each doubling of images."
    rows = []
    for d in map(Path, runs):
        for s in run_seeds(d):
            for m, name in (('vae', 'baseline'), ('mpvae', 'MPVAE')):
                if not (d/f'{m}_seed{s}').exists(): continue
                h = run_history(d/f'{m}_seed{s}'); c = _cfg(d/f'{m}_seed{s}')
                dd = doublings(h)
                if not dd: continue
                rows.append(f"| {_lr(c.get('lr', 1e-3))} | {name} | {s} | {h[-1]['images']:,} | "
                            + ', '.join(f"{x:+.1f}" for *_, x in dd) + " |")
    if not rows: return []
    return ['', '## NELBO: how fast it still falls', '',
            'Validation NELBO (nats, the mean of the last 3 logged chunks at each point) change over each doubling of images from '
            '307,200 (0.3 -> 0.6 M, 0.6 -> 1.2 M, ...), from the runs\' logs (every logged point, not only the probed snapshots). A plateau shows as falls shrinking '
            'towards 0.', '',
            '| setting | model | seed | images | change per doubling |',
            '|---|---|---:|---:|---|'] + rows


def report_md(evals:list, figs:list, runs:list=()) -> str:
    from mpvae.tables import PAPER
    seeds = sorted({r['seed'] for r in evals}); lines_ = sorted({r['line'] for r in evals})
    lines = ['# dSprites learning curves: does the paper\'s Table 2 ordering appear as the models train longer?', '',
             'Generated by `python tools/learning_curves.py report` from the long runs (`mpvae-train --stop-images`; earlier chunks by `tools/long_run.py`; see the README, '
             '"Long runs"). Models: the beta-VAE baseline (z = 12) and the beta-MPVAE with paths (3, 9), beta = 4 for every '
             'path, Bernoulli likelihood, batch 64, float32, Adam at a constant learning rate: ' + ' and '.join(lines_)
             + ' (the field\'s reference uses 1e-4; `reports/dsprites_schedules.md` compares schedules), representation seeds '
             + ', '.join(map(str, seeds)) + '. '
             + PROBE_TEXT[evals[0]['probe']['kind']] + ' ± is the std over the probe runs of one representation seed; the verdict compares '
             'z1+z2 with the baseline on the mean over the five labels and says "holds" only if z1+z2 is ahead by more than two '
             'standard errors. The reference protocol of the field (disentanglement_lib) trains 300,000 steps at batch 64 = '
             '19.2 M images.', '']
    for f in figs: lines += [f'![]({Path(f).name})', '']
    lines += ['| setting | seed | images | steps (bs 64) | baseline | z1 | z2 | z1+z2 | z1+z2 - baseline | verdict | active dims (baseline / z1 / z2) | NELBO baseline / MPVAE |',
              '|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|']
    for r in evals:
        m = {k: r['rows'][k]['mean'] for k in FEATS}
        o = r['ordering']; a = r['active']; h = r['history']
        lines.append(f"| {r['line']} | {r['seed']} | {r['images']:,} | {r['images']//64:,} | " + ' | '.join(f"{m[k]['mean']:.2f} ± {m[k]['std_runs']:.2f}" for k in FEATS)
                     + f" | {o['diff']:+.2f} ± {o['se']:.2f} | {o['verdict']} | {a['vae/z']} / {a['mpvae/z1']} / {a['mpvae/z2']} | "
                     f"{h['vae'].get('nelbo', float('nan')):.2f} / {h['mpvae'].get('nelbo', float('nan')):.2f} |")
    lines += seed_md(evals) + plateau_md(evals) + nelbo_md(runs)
    p = PAPER['dsprites']['acc']
    lines += ['', f"The paper (Table 2): baseline {p['baseline']['mean']:.2f}, z1 {p['z1']['mean']:.2f}, z2 {p['z2']['mean']:.2f}, "
              f"z1+z2 {p['z1+z2']['mean']:.2f} (mean over the five labels).", '']
    lines += ['## Per label at the longest length of each seed', '',
              '| setting | images | seed | features | ' + ' | '.join(LABELS) + ' | mean |', '|---|---:|---:|---|' + '---:|'*(len(LABELS)+1)]
    for ln, seed in sorted({(r['line'], r['seed']) for r in evals}):
        r = max((r for r in evals if (r['line'], r['seed']) == (ln, seed)), key=lambda r: r['images'])
        for k in FEATS:
            row = r['rows'][k]
            lines.append(f"| {ln} | {r['images']:,} | {seed} | {k} | " + ' | '.join(f"{row['acc'][l]['mean']:.2f}" for l in LABELS)
                         + f" | {row['mean']['mean']:.2f} |")
    return '\n'.join(lines) + '\n'


def cmd_report(a):
    from mpvae.core import atomic_write
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    evals = load_evals(*a.runs, sub=EVAL_DIRS[a.probe])
    if not evals: sys.exit(f"no evaluations under {', '.join(a.runs)} (*/{EVAL_DIRS[a.probe]}): run `python tools/learning_curves.py evaluate` first")
    figs = plot_curves(evals, out, 'dsprites_lc' if a.probe == 'logreg' else 'dsprites_lc_cv')
    md = report_md(evals, figs, a.runs)
    if a.notes and Path(a.notes).exists(): md += '\n' + Path(a.notes).read_text()
    name = 'dsprites_learning_curves' + ('' if a.probe == 'logreg' else '_cv')
    with atomic_write(out/f'{name}.md', 'w') as f: f.write(md)
    print(f"wrote {out/name}.md and {len(figs)} figures")


def _cfg(run:Path) -> dict:
    "A run's settings: from state.pth, else config.json (written by long_run.py beside history.csv), else its last snapshot."
    import torch
    if (st := _state(run)) is not None: return st['cfg']
    if (p := run/'config.json').exists(): return json.loads(p.read_text())
    snaps = sorted(run.glob('snap_*.pth'), key=lambda q: int(q.stem.split('_')[1]))
    return torch.load(snaps[-1], map_location='cpu', weights_only=True)['meta']['record'] if snaps else {}


def _setting(c:dict) -> str:
    "One line naming a run's schedule: lr, schedule, batch, betas, warm-up."
    if not c: return 'settings not recorded'
    b = c.get('betas', [c.get('beta')])
    txt = f"{'one-cycle, peak' if c.get('schedule') == 'one_cycle' else 'constant'} lr {c.get('lr'):g}, batch {c.get('bs')}"
    txt += f", betas {tuple(b)}" if len(b) > 1 else f", beta {b[0]:g}"
    if c.get('warmup_images'): txt += f", KL warm-up over {c['warmup_images']:,} images"
    if c.get('precision') == 'bf16': txt += ', bfloat16 autocast'
    return txt


def cmd_compare(a):
    "Schedules and loss settings side by side at equal image budgets: NELBO per chunk, speed, probes and active dims."
    import numpy as np, matplotlib
    matplotlib.use('Agg'); import matplotlib.pyplot as plt
    from mpvae.core import atomic_write
    from mpvae.experiment import save_fig
    ref = Path(a.reference); out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    variants = [(a.reference_name, ref)] + [(Path(v).name, Path(v)) for v in a.variants]
    budget = a.images
    runs = {}   # (variant, model, seed) -> (cfg, history rows up to the budget)
    for name, d in variants:
        for m in ('vae', 'mpvae'):
            for seed in a.seeds:
                r = d/f'{m}_seed{seed}'
                if not r.is_dir() or r.is_symlink(): continue
                rows = [h for h in run_history(r) if h['images'] <= budget]
                if rows: runs[(name, m, seed)] = (_cfg(r), rows)
    if not runs: sys.exit('no runs found')
    fig, axs = plt.subplots(1, 2, figsize=(12, 3.6))
    names = list(dict.fromkeys(k[0] for k in runs))   # one colour per setting, one line style per seed
    for j, m in enumerate(('vae', 'mpvae')):
        for (name, mm, seed), (c, rows) in ((k, v) for k, v in runs.items() if k[1] == m):
            axs[j].plot([h['images'] for h in rows], [h['nelbo'] for h in rows], marker='o', ms=3, color=f'C{names.index(name)}',
                        ls=['-', '--', ':', '-.'][a.seeds.index(seed) % 4],
                        label=f'{name}: {_setting(c)}' + (f', seed {seed}' if len(a.seeds) > 1 else ''))
        axs[j].set_title(f"{'baseline (z = 12)' if m == 'vae' else 'MPVAE (3, 9)'}: validation NELBO", fontsize=9)
        axs[j].set_xscale('log'); axs[j].set_xlabel('images seen'); axs[j].set_ylabel('nats / image'); axs[j].grid(alpha=0.3)
        if axs[j].get_legend_handles_labels()[0]: axs[j].legend(fontsize=6)
    fig.tight_layout(); fig_p = save_fig(fig, out/f'{a.name}_nelbo.png')
    chunks = sorted({h['images'] for _, rows in runs.values() for h in rows})
    if len(chunks) > 6:   # a long budget: the table keeps the doublings from the first chunk and the budget (the figure has every chunk)
        chunks = [c for c in chunks if (c // chunks[0]) & (c // chunks[0] - 1) == 0 and c % chunks[0] == 0 or c == chunks[-1]]
    lines = [f'# dSprites: training settings (schedule, loss, precision) compared at {budget:,} images', '',
             'Generated by `python tools/learning_curves.py compare` from long runs (`mpvae-train --stop-images`; earlier chunks by `tools/long_run.py`) (representation seed'
             f"{'s' if len(a.seeds) > 1 else ''} {', '.join(map(str, a.seeds))}, float32 unless the setting says bfloat16, "
             'one thread per run). Validation NELBO (nats per image, beta = 1, on the runs\' held-out '
             '1% of dSprites) after each chunk of training; the one-cycle runs are comparable only at the end of their '
             'cycle. Throughput is the median over chunks of a run, two runs sharing the 2 cores; it depends on the machine '
             'and on what ran beside it, so compare it only between runs with the same layout that ran together.', '',
             f'![]({Path(fig_p).name})', '',
             '| run | model | seed | setting | layout | ' + ' | '.join(f'NELBO at {c:,}' for c in chunks) + ' | recon at end | KL per path at end | median img/s |',
             '|---|---|---:|---|---|' + '---:|'*len(chunks) + '---:|---|---:|']
    for (name, m, seed), (c, rows) in runs.items():
        by = {h['images']: h for h in rows}; last = rows[-1]
        kls = ' / '.join(f"{last[k]:.2f}" for k in sorted(last) if k.startswith('kl') and k[2:].isdigit())
        lines.append(f"| {name} | {m} | {seed} | {_setting(c)} | {last.get('layout') or 'contig'} | "
                     + ' | '.join(f"{by[i]['nelbo']:.2f}" if i in by else '' for i in chunks)
                     + f" | {last['recon']:.2f} | {kls} | {np.median([h['img_per_s'] for h in rows]):.0f} |")
    probe = 'C = 1' if a.probe == 'logreg' else 'C chosen by 5-fold cross-validation'
    lines += ['', f'## Probes at {budget:,} images (paper preset protocol, logistic regression with {probe})', '',
              '| run | seed | baseline | z1 | z2 | z1+z2 | z1+z2 - baseline | active dims (baseline / z1 / z2) |', '|---|---:|---:|---:|---:|---:|---:|---|']
    for name, d in variants:
        for seed in a.seeds:
            if not any(k[0] == name and k[2] == seed for k in runs): continue   # a seed this setting has no run of
            e = d/EVAL_DIRS[a.probe]/f'seed{seed}_{budget}.json'
            if not e.exists(): lines.append(f'| {name} | {seed} | not evaluated |||||| '); continue
            r = json.loads(e.read_text()); mm = {k: r['rows'][k]['mean'] for k in FEATS}; o = r['ordering']; act = r['active']
            lines.append(f"| {name} | {seed} | " + ' | '.join(f"{mm[k]['mean']:.2f} ± {mm[k]['std_runs']:.2f}" for k in FEATS)
                         + f" | {o['diff']:+.2f} ± {o['se']:.2f} | {act['vae/z']} / {act['mpvae/z1']} / {act['mpvae/z2']} |")
    md = '\n'.join(lines) + '\n'
    if a.notes and Path(a.notes).exists(): md += '\n' + Path(a.notes).read_text()
    with atomic_write(out/f'{a.name}.md', 'w') as f: f.write(md)
    print(f"wrote {out/f'{a.name}.md'}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    c = sub.add_parser('compare', help='schedules / loss settings side by side at an equal image budget')
    c.add_argument('variants', nargs='+', help='run folders holding vae_seed<s>/ and/or mpvae_seed<s>/ (e.g. runs/sched/*)')
    c.add_argument('--reference', default='runs/long', help='the runs the others are compared with')
    c.add_argument('--reference-name', default='const1e-3', help='their name in the tables')
    c.add_argument('--seeds', type=int, nargs='+', default=[0], help='representation seeds to compare')
    c.add_argument('--images', type=int, default=307_200, help='the budget')
    c.add_argument('--out', default='reports'); c.add_argument('--notes', default='reports/dsprites_schedules_notes.md')
    c.add_argument('--name', default='dsprites_schedules', help='the report is OUT/NAME.md, its figure OUT/NAME_nelbo.png')
    c.add_argument('--probe', choices=sorted(EVAL_DIRS), default='logreg', help="whose evaluations the probe table shows: eval/ (C = 1) or eval_cv/")
    for name in ('evaluate', 'report'):
        s = sub.add_parser(name)
        s.add_argument('--probe', choices=sorted(EVAL_DIRS), default='logreg',
                       help='logreg: the fixed C = 1 probe (eval/, dsprites_learning_curves.md); logreg_cv: C by cross-validation '
                            '(eval_cv/, dsprites_learning_curves_cv.md)')
        if name == 'evaluate':
            s.add_argument('--runs', default='runs/long')
            s.add_argument('--force', action='store_true', help='re-evaluate pairs already evaluated')
            s.add_argument('--images', type=int, nargs='*', help='only the snapshots taken after these many images')
            s.add_argument('--baseline-evals', help="probe only the MPVAE snapshots; take the baseline from this eval/ folder's "
                           "evaluations at the same seed and length (a run whose baseline snapshots are not kept)")
        else:
            s.add_argument('--runs', nargs='+', default=['runs/long', 'runs/long/lr1e-4'], help='one folder per training setting')
            s.add_argument('--out', default='reports')
            s.add_argument('--notes', default='reports/dsprites_learning_curves_notes.md', help='Markdown appended to the report')
    a = p.parse_args(argv)
    {'evaluate': cmd_evaluate, 'report': cmd_report, 'compare': cmd_compare}[a.cmd](a)


if __name__ == '__main__':
    main()
