#!/usr/bin/env python
"""Turn a dSprites table run into the committed report: `reports/<name>.md`, `.json` and its figures.

    mpvae-tables --preset pretrained_lr1e-4 --tables dsprites --out results/pretrained_lr1e-4
    python tools/table_report.py results/pretrained_lr1e-4 --name dsprites_pretrained_lr1e-4
    mpvae-tables --preset paper --tables dsprites --out results/paper
    python tools/table_report.py results/paper --name dsprites_paper --notes reports/dsprites_paper_notes.md

The markdown is a header written from the run's results.json (the preset; for a `pretrained*` preset the training
record of every shipped model, otherwise how the run trained its models: images, schedule, the precision `auto` chose,
the machine and the wall time), then the notes file if one is given (the interpretation, written by hand), then the
run's own table.md; the json is results.json with its figure paths made relative (no machine's folders in a committed
file). Nothing is written unless the run finished.
"""
import argparse, json, shutil
from pathlib import Path
from mpvae.core import BASELINE, upgrade_names

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ('vs_paper', 'kl_mpvae', 'traversals_mpvae')   # the ones the report shows
OPTIONAL = ('path_mi_mpvae', 'mi_mpvae')                 # shown when the run made them (figures=True)


def record_line(seed, kind, r:dict) -> str:
    "One shipped model's training record as a sentence."
    return (f"- seed {seed}, {kind}: {r['images']:,} images ({r['steps']:,} steps at batch {r['bs']}), {r['schedule']} lr "
            f"{r['lr']:g}, {r['precision']}, {r['train_seconds']/3600:.1f} h of training on one thread of an {r['cpu']} "
            f"shared with other jobs, commit {r['commit']}")


def probe_line(res:dict, seeds:list) -> str:
    "The probe protocol and what the ± mean."
    from mpvae.reports import probe_md  # the one description of each probe kind
    pr = res['probe']
    return (f"Probe protocol: pool {pr['pool']:,}. {probe_md(pr)} ± is the std over the {pr['n_splits'] * pr['n_seeds']} "
            "probe runs" + ('; "seeds ±" the std over the representation seeds, the spread the verdict is tested '
                            f"against. The disentanglement metrics are those of seed {', '.join(map(str, res['params'].get('metrics_seeds') or seeds[:1]))}'s models."
                            if len(seeds) > 1 else '.'))


def precision_text(res:dict) -> str:
    "What the models trained in: the choice of `precision='auto'` where the run recorded it."
    p = res['params'].get('precision')
    chosen = {(r['precision'], r['channels_last']) for pair in (res.get('precision') or {}).values() for r in pair.values() if r}
    if not chosen: return f"precision `{p}`"
    txt = ' / '.join(f"{'float32' if pr == 'fp32' else pr}{' with channels-last' if cl else ''}" for pr, cl in sorted(chosen))
    return f"precision `{p}` (it chose {txt} here)" if p == 'auto' else f"precision {txt}"


def trained_header(res:dict) -> str:
    "The opening of a run that trained its models: how, where, and how long it took."
    p, t = res['params'], res.get('times', {})
    seeds = [str(s) for s in p['rep_seeds']]
    train = [t[f'train_seed{s}']/60 for s in seeds if f'train_seed{s}' in t]
    where = f"on {p['cpu']}" if p.get('cpu') else 'on the machine it ran on'
    stages = ([f"training {', '.join(f'{x:.1f}' for x in train)} min per seed, both models"] if train else []) + \
             ([f"metrics {t['disentanglement']/60:.1f} min"] if 'disentanglement' in t else [])
    bs_ = [float(b) for b in p['mpvae_betas']]
    betas = f"beta {p['beta']:g} for every path" if set(bs_) == {float(p['beta'])} else f"beta {p['beta']:g} (baseline), {tuple(bs_)} (MPVAE paths)"
    lr = f"{p['lr']:.0e}".replace('e-0', 'e-')
    data = {'rendered': "the package's rendered dSprites grid"}.get(res.get('data_source'), res.get('data_source', '?'))
    return '\n'.join([
        f"# dSprites, `{res['preset']}` preset: Table 2 from models trained in the run, {len(seeds)} seed{'s' if len(seeds) > 1 else ''}", '',
        f"Made with `mpvae-tables --preset {res['preset']} --tables dsprites`: the baseline (z = {sum(p['baseline_dims'])}) and the "
        f"MPVAE (paths {tuple(p['mpvae_dims'])}) each trained for {p['train_images']:,} images ({p['train_images'] // p['bs']:,} "
        f"Adam steps at batch {p['bs']}, constant lr {lr}, {p['epochs']} logging epochs), {betas}, "
        f"{precision_text(res)}, representation seed{'s' if len(seeds) > 1 else ''} {', '.join(seeds)}; data: {data}.", '',
        f"Wall time {res['elapsed_s']/60:.1f} min {where} with {p.get('threads', '?')} threads"
        + (f" ({'; '.join(stages)})" if stages else '') + ". Machine-specific: `BENCHMARKS.md` has the conditions.", '',
        probe_line(res, seeds), ''])


def header(res:dict) -> str:
    "The opening of a `pretrained*` run: from which shipped models, with which probe protocol."
    p, recs = res['params'], res['pretrained_records']
    seeds = sorted(recs, key=int)
    setting = f"setting `{p['pretrained_setting']}`" if p.get('pretrained_setting') else 'the default setting, Adam lr 1e-3'
    if p.get('pretrained_baseline'): setting += f", the baselines of setting `{p['pretrained_baseline']}`"
    two = len(p.get('mpvae_dims', [3, 9])) == 2
    lines = [f"# dSprites, `{res['preset']}` preset: Table 2 from the shipped models, "
             f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}", '',
             f"Regenerated with `mpvae-tables --preset {res['preset']} --tables dsprites` (no training) from the models in "
             f"`mpvae/pretrained/` ({setting}, representation seed{'s' if len(seeds) > 1 else ''} "
             f"{', '.join(seeds)})." + (" The same snapshots, at every length of training, are probed by "
             f"`mpvae-curves report` (`mpvae.curves`) in `dsprites_learning_curves_cv.md`." if two else '')
             + (" CI reruns this preset and checks every number below within 0.3 points (`tests/test_pretrained.py`)."
                if res['preset'] == 'pretrained' else '') + " Training records of the models:", '']
    lines += [record_line(s, k, recs[s][k]) for s in seeds for k in (BASELINE, 'mpvae')]
    lines += ['', probe_line(res, seeds), '']
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('out', help='the --out folder of the mpvae-tables run (holding dsprites/results.json)')
    ap.add_argument('--name', required=True, help='the report name, e.g. dsprites_pretrained_lr1e-4')
    ap.add_argument('--reports', default=str(ROOT/'reports'))
    ap.add_argument('--notes', help='Markdown written by hand (the interpretation), put between the header and the table')
    a = ap.parse_args(argv)
    run = Path(a.out)/'dsprites'
    if not (run/'results.json').exists(): raise SystemExit(f"{run/'results.json'} is missing: run mpvae-tables with --out {a.out} first")
    res = upgrade_names(json.loads((run/'results.json').read_text()))   # a run of the baseline's old name: written in today's
    pretrained = bool(res.get('params', {}).get('pretrained'))
    if pretrained and not res.get('pretrained_records'):
        raise SystemExit(f"{run/'results.json'} is from a pretrained preset but lists no pretrained_records: rerun it")
    if a.notes and not Path(a.notes).exists(): raise SystemExit(f"--notes {a.notes}: no such file")
    missing = [f for f in FIGURES if not (run/f'{f}.png').exists()]
    if missing: raise SystemExit(f"{run} lacks {', '.join(f + '.png' for f in missing)}: the run did not finish; rerun it")
    table = (run/'table.md').read_text()
    res['figures'] = [Path(f).name for f in res.get('figures', [])]
    notes = Path(a.notes).read_text().strip() + '\n\n' if a.notes else ''
    figs = list(FIGURES) + [f for f in OPTIONAL if (run/f'{f}.png').exists()]
    md = (header(res) if pretrained else trained_header(res)) + '\n' + notes + table.rstrip() + '\n\n' + '\n\n'.join(f'![]({a.name}_{f}.png)' for f in figs) + '\n'
    rep = Path(a.reports); rep.mkdir(parents=True, exist_ok=True)
    for f in figs: shutil.copyfile(run/f'{f}.png', rep/f'{a.name}_{f}.png')
    from mpvae.core import atomic_write   # each file appears whole or not at all; the md (which names the rest) last
    with atomic_write(rep/f'{a.name}.json', 'w') as fh: fh.write(json.dumps(res, indent=1, ensure_ascii=False) + '\n')
    with atomic_write(rep/f'{a.name}.md', 'w') as fh: fh.write(md)
    print(f"wrote {rep/a.name}.md, .json and {len(figs)} figures")


if __name__ == '__main__':
    main()
