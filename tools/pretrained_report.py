#!/usr/bin/env python
"""Turn a `pretrained*` table run into the committed report: `reports/<name>.md`, `.json` and its figures.

    mpvae-tables --preset pretrained_lr1e-4 --tables dsprites --out results/pretrained_lr1e-4
    python tools/pretrained_report.py results/pretrained_lr1e-4 --name dsprites_pretrained_lr1e-4

The markdown is a header written from the run's results.json (the preset, the training record of every shipped model,
the probe protocol) followed by the run's own table.md; the json is results.json with its figure paths made relative
(no machine's folders in a committed file). Nothing is written unless the run is a finished pretrained run.
"""
import argparse, json, shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ('vs_paper', 'kl_mpvae', 'traversals_mpvae')   # the ones the report shows


def record_line(seed, kind, r:dict) -> str:
    "One shipped model's training record as a sentence."
    return (f"- seed {seed}, {kind}: {r['images']:,} images ({r['steps']:,} steps at batch {r['bs']}), {r['schedule']} lr "
            f"{r['lr']:g}, {r['precision']}, {r['train_seconds']/3600:.1f} h of training on one thread of an {r['cpu']} "
            f"shared with other jobs, commit {r['commit']}")


def header(res:dict) -> str:
    "The report's opening: what made it, from which models, with which probe protocol."
    p, recs = res['params'], res['pretrained_records']
    seeds = sorted(recs, key=int)
    pr = res['probe']
    setting = f"setting `{p['pretrained_setting']}`" if p.get('pretrained_setting') else 'the default setting, Adam lr 1e-3'
    kind = {'logreg': 'logistic regression', 'mlp': 'an MLP'}.get(pr['kind'], pr['kind'])
    lines = [f"# dSprites, `{res['preset']}` preset: Table 2 from the shipped models, "
             f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''}", '',
             f"Regenerated with `mpvae-tables --preset {res['preset']} --tables dsprites` (no training) from the models in "
             f"`mpvae/pretrained/` ({setting}, representation seed{'s' if len(seeds) > 1 else ''} "
             f"{', '.join(seeds)}). The same snapshots, at every length of training, are probed by "
             f"`tools/learning_curves.py` in `dsprites_learning_curves.md`."
             + (" CI reruns this preset and checks every number below within 0.3 points (`tests/test_pretrained.py`)."
                if res['preset'] == 'pretrained' else '') + " Training records of the models:", '']
    lines += [record_line(s, k, recs[s][k]) for s in seeds for k in ('vae', 'mpvae')]
    lines += ['', f"Probe protocol: pool {pr['pool']:,}, {pr['n_splits']} splits x {pr['n_seeds']} seeds, {kind} on "
              f"{pr['train_size']:,} / {pr['valid_size']:,} images. ± is the std over the {pr['n_splits'] * pr['n_seeds']} "
              "probe runs" + ('; "seeds ±" the std over the representation seeds, the spread the verdict is tested '
                              "against. The disentanglement metrics are those of seed 0's models." if len(seeds) > 1 else '.'), '']
    return '\n'.join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('out', help='the --out folder of the mpvae-tables run (holding dsprites/results.json)')
    ap.add_argument('--name', required=True, help='the report name, e.g. dsprites_pretrained_lr1e-4')
    ap.add_argument('--reports', default=str(ROOT/'reports'))
    a = ap.parse_args(argv)
    run = Path(a.out)/'dsprites'
    if not (run/'results.json').exists(): raise SystemExit(f"{run/'results.json'} is missing: run mpvae-tables with --out {a.out} first")
    res = json.loads((run/'results.json').read_text())
    if not res.get('params', {}).get('pretrained') or not res.get('pretrained_records'):
        raise SystemExit(f"{run/'results.json'} is not from a pretrained preset (params.pretrained is not true)")
    missing = [f for f in FIGURES if not (run/f'{f}.png').exists()]
    if missing: raise SystemExit(f"{run} lacks {', '.join(f + '.png' for f in missing)}: the run did not finish; rerun it")
    table = (run/'table.md').read_text()
    res['figures'] = [Path(f).name for f in res.get('figures', [])]
    md = header(res) + '\n' + table.rstrip() + '\n\n' + '\n\n'.join(f'![]({a.name}_{f}.png)' for f in FIGURES) + '\n'
    rep = Path(a.reports); rep.mkdir(parents=True, exist_ok=True)
    for f in FIGURES: shutil.copyfile(run/f'{f}.png', rep/f'{a.name}_{f}.png')
    from mpvae.core import atomic_write   # each file appears whole or not at all; the md (which names the rest) last
    with atomic_write(rep/f'{a.name}.json', 'w') as fh: fh.write(json.dumps(res, indent=1, ensure_ascii=False) + '\n')
    with atomic_write(rep/f'{a.name}.md', 'w') as fh: fh.write(md)
    print(f"wrote {rep/a.name}.md, .json and {len(FIGURES)} figures")


if __name__ == '__main__':
    main()
