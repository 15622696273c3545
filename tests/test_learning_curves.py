"""`mpvae.curves`: the verdict over representation seeds, and the histories it reads (no probes run here)."""
import csv, json
from pathlib import Path

import numpy as np, pytest, torch

ROOT = Path(__file__).resolve().parents[1]
import mpvae.curves as lc
import mpvae.cli as cli

def _eval(seed, images, means):
    "An evaluation as `evaluate` writes it, with feature set k's mean accuracy `means[k]` (25 probe runs)."
    cell = lambda m: dict(mean=m, std_runs=0.2, std_seeds=0.0, per_seed=[m], n_seeds=1, n_runs=25)
    rows = {k: dict(feature=f, dims=3, acc={l: cell(m) for l in lc.LABELS}, mean=cell(m))
            for (k, f), m in zip(lc.FEATS.items(), means)}
    return dict(seed=seed, images=images, line='lr 1e-4', rows=rows, chance={l: .1 for l in lc.LABELS},
                majority={l: .1 for l in lc.LABELS})

def test_over_seeds_uses_the_spread_between_seeds():
    base, both = [38.0, 37.0, 36.0], [35.0, 35.5, 33.0]
    ev = [_eval(s, 1000, [b, 20., 30., z]) for s, (b, z) in enumerate(zip(base, both))] + [_eval(0, 500, [40, 20, 30, 41])]
    comb = lc.over_seeds(ev)
    assert list(comb) == [('lr 1e-4', 1000)]                     # one seed at 500 images: nothing to combine there
    c = comb[('lr 1e-4', 1000)]
    assert c['rows']['baseline']['mean']['mean'] == pytest.approx(np.mean(base))
    assert c['rows']['z1+z2']['mean']['std_seeds'] == pytest.approx(np.std(both, ddof=1))
    se = np.sqrt(np.var(base, ddof=1)/3 + np.var(both, ddof=1)/3)
    o = c['ordering']
    assert o['diff'] == pytest.approx(np.mean(both) - np.mean(base)) and o['se'] == pytest.approx(se)
    assert o['verdict'] == 'reversed' and o['unit'] == 'representation seeds'   # -2.5 < -2 x 0.96
    md = '\n'.join(lc.seed_md(ev))
    assert '| lr 1e-4 | 1,000 | 0, 1, 2 |' in md and '-3.00, -1.50, -3.00' in md   # the paired differences, seed by seed
    from scipy.stats import ttest_1samp
    t = ttest_1samp([-3.0, -1.5, -3.0], 0.0)
    assert f'| -2.50 ± {se:.2f} / {0.5:.2f} (t {t.statistic:.2f}, p {t.pvalue:.3f}) |' in md   # paired se, t and p: another library's t test
    assert np.isnan(lc.paired_t([1.0])[2]) and np.isnan(lc.paired_t([2.0, 2.0])[2])  # no spread: no t

def test_within_noise_when_seeds_disagree():
    ev = [_eval(0, 1000, [38, 20, 30, 41]), _eval(1, 1000, [38, 20, 30, 33])]   # +3 and -5: no verdict
    assert lc.over_seeds(ev)[('lr 1e-4', 1000)]['ordering']['verdict'] == 'within noise'

def test_mean_line_keeps_one_set_of_seeds():
    # seeds 0-2 reach 1000 and 2000 images, only seeds 0 and 1 reach 4000, only seed 0 8000
    diffs = {(0, 1000): 1., (1, 1000): 2., (2, 1000): 6., (0, 2000): 3., (1, 2000): 5., (2, 2000): 1.,
             (0, 4000): 0., (1, 4000): 4., (0, 8000): 9.}
    ev = [dict(line='lr 1e-4', seed=s, images=n, ordering=dict(diff=d)) for (s, n), d in diffs.items()]
    ev.append(dict(line='other', seed=5, images=4000, ordering=dict(diff=-7.)))
    full, some = lc.mean_diffs(ev, 'lr 1e-4')
    assert full == {1000: pytest.approx(3.), 2000: pytest.approx(3.)}   # all three seeds only
    assert some == {4000: (pytest.approx(2.), [0, 1])}                  # two seeds: its own marker; one seed: none
    assert lc.mean_diffs(ev, 'other') == ({4000: -7.}, {})             # a line of one seed is that seed

def test_history_and_config_from_a_run_folder(tmp_path):
    "history.csv (the converted long runs' columns) read back with numbers as numbers; config.json or the last snapshot's record."
    a, b = tmp_path/'a', tmp_path/'b'; a.mkdir(); b.mkdir()
    hist = [dict(chunk=1, images=640, nelbo=130.5, layout='cl'), dict(chunk=2, images=1280, nelbo=120.25, layout='cl')]
    with open(a/'history.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(hist[0])); w.writeheader(); w.writerows(hist)
    (a/'config.json').write_text(json.dumps(dict(lr=1e-4, model='vae')))
    assert lc.run_history(a) == hist and lc.run_config(a) == dict(lr=1e-4, model='baseline')   # the baseline's old name read as today's
    rec = dict(lr=1e-3, spec=dict(lr=1e-3, warmup_images=640, loss=dict(betas=[4.0, 1.0])))   # 05_train's record
    for n in (640, 1280): torch.save(dict(meta=dict(record={**rec, 'images': n})), b/f'snap_{n}.pth')
    assert lc.run_config(b) == dict(lr=1e-3, warmup_images=640, betas=[4.0, 1.0], images=1280)   # the last snapshot's
    with pytest.raises(FileNotFoundError, match='history.csv not found'): lc.run_history(b)

def test_plateau_compares_the_last_doubling():
    ev = [_eval(0, n, [b, 20, 30, 30]) for n, b in ((250, 40.0), (500, 38.0), (1000, 37.5))]
    for r, nelbo in zip(ev, (130., 120., 115.)): r['history'] = dict(baseline=dict(nelbo=nelbo), mpvae=dict(nelbo=nelbo + 1))
    rows = [l for l in lc.plateau_md(ev) if l.startswith('| lr')]
    assert rows == ['| lr 1e-4 | 0 | 500 -> 1,000 | -0.50 | met | -5.00 / -5.00 |']
    ev[2]['rows']['baseline']['mean']['mean'] = 36.5                              # moved 1.5 points: not yet
    assert '| -1.50 | not met |' in lc.plateau_md(ev)[-1]
    assert lc.plateau_md(ev[:1]) == []                                           # one point: no doubling to judge
    ev.append(_eval(0, 1250, [30, 20, 30, 30]))                                    # a longer point without its half probed:
    assert '| 500 -> 1,000 | -1.50 |' in lc.plateau_md(ev)[-1]                    # the latest doubling there is still counts

def _power_rows(a=70., b=30., c=0.5, chunk=76_800, chunks=64):
    "A run's log whose NELBO follows a + b (images/1e6)^-c exactly."
    return [dict(chunk=k, images=k*chunk, nelbo=a + b*(k*chunk/1e6)**-c) for k in range(1, chunks + 1)]

def test_doublings_of_a_known_curve():
    rows = _power_rows()
    f = lambda n: 70 + 30*(n/1e6)**-0.5
    dd = lc.doublings(rows, window=1)
    assert [(x, y) for x, y, _ in dd] == [(307_200 * 2**k, 614_400 * 2**k) for k in range(4)]   # to 4,915,200 = 64 chunks
    assert len(lc.doublings(rows[:63], window=1)) == 3                                             # one chunk short of it
    assert [d for *_, d in dd] == pytest.approx([f(2*x) - f(x) for x, *_ in dd])
    assert lc.doublings(rows, window=3)[0][2] == pytest.approx(np.mean([f(n) for n in (460_800, 537_600, 614_400)])
                                                              - np.mean([f(n) for n in (153_600, 230_400, 307_200)]))

def test_nelbo_md_one_row_per_run(tmp_path):
    runs = {'baseline_seed0': _power_rows(b=20., c=1.0), 'mpvae_seed0': _power_rows(chunks=20), 'vae_seed1': _power_rows(chunks=7)}   # seed 1: the old name
    for name, rows in runs.items():
        (tmp_path/name).mkdir(); (tmp_path/name/'config.json').write_text(json.dumps(dict(lr=1e-4)))
        with open(tmp_path/name/'history.csv', 'w', newline='') as f:
            w = csv.DictWriter(f, fieldnames=['chunk', 'images', 'nelbo']); w.writeheader(); w.writerows(rows)
    md = [l for l in lc.nelbo_md([tmp_path]) if l.startswith('| lr')]
    g = lambda n: np.mean([70 + 20/((n - k*76_800)/1e6) for k in range(3)])     # the mean of the 3 chunks ending at n
    falls = ', '.join(f'{g(614_400 * 2**k) - g(307_200 * 2**k):+.1f}' for k in range(4))
    assert md[0] == f'| lr 1e-4 | baseline | 0 | 4,915,200 | {falls} |'
    assert md[1].startswith('| lr 1e-4 | MPVAE | 0 | 1,536,000 | ') and md[1].count(',') == 2 + 1   # two doublings (and 1,536,000)
    assert len(md) == 2                                         # seed 1 never doubled 307,200 images: no row

def test_compare_lists_every_seed_and_names_the_precision(tmp_path):
    "Runs kept as history.csv + config.json only (no state): each (setting, model, seed) gets its row, bf16 is named."
    hist = lambda n0: [dict(chunk=k, images=640*k, train_loss=n0, valid_loss=n0, recon=n0 - 10, kl1=10., nelbo=n0 - k,
                            seconds=1., img_per_s=640., cpu_time=1., layout='cl', beta_weight=1.) for k in (1, 2)]
    for setting, prec in (('ref', 'fp32'), ('bf16', 'bf16')):
        for seed in (0, 1):
            d = tmp_path/setting/f'vae_seed{seed}'; d.mkdir(parents=True)
            with open(d/'history.csv', 'w', newline='') as f:
                w = csv.DictWriter(f, fieldnames=list(hist(0)[0])); w.writeheader(); w.writerows(hist(100. + seed))
            (d/'config.json').write_text(json.dumps(dict(model='vae', seed=seed, beta=4.0, bs=64, lr=1e-4, schedule='const',
                                                         precision=prec, chunk_images=640)))
    cli.curves_main(['compare', str(tmp_path/'bf16'), '--reference', str(tmp_path/'ref'), '--reference-name', 'ref',
             '--seeds', '0', '1', '--images', '1280', '--out', str(tmp_path/'out'), '--notes', '', '--name', 'prec'])
    md = (tmp_path/'out'/'prec.md').read_text()
    assert '![](prec_nelbo.png)' in md and (tmp_path/'out'/'prec_nelbo.png').exists()
    assert '| bf16 | baseline | 1 | constant lr 0.0001, batch 64, beta 4, bfloat16 autocast | cl | 100.00 | 99.00 |' in md   # old-named runs
    assert '| ref | baseline | 0 | constant lr 0.0001, batch 64, beta 4 | cl | 99.00 | 98.00 |' in md
    assert '| ref | 1 | not evaluated |' in md and 'representation seeds 0, 1' in md

def test_baseline_pairs_need_an_mpvae_snapshot_and_a_baseline_evaluation(tmp_path):
    runs, ev = tmp_path/'betas', tmp_path/'base_eval'
    for s, n in [(0, 100), (0, 200), (1, 100), (0, 400)]:
        (runs/f'mpvae_seed{s}').mkdir(parents=True, exist_ok=True); (runs/f'mpvae_seed{s}'/f'snap_{n}.pth').write_bytes(b'')
    (runs/'mpvae_seedx').mkdir(); (runs/'mpvae_seedx'/'snap_100.pth').write_bytes(b'')   # not a seed folder
    ev.mkdir()
    for s, n in [(0, 100), (0, 400), (1, 200), (2, 100)]: (ev/f'seed{s}_{n}.json').write_text('{}')
    got = lc.baseline_pairs(runs, ev)
    assert list(got) == [(0, 100), (0, 400)]                       # (0, 200) and (1, 100) lack a baseline evaluation
    assert got[(0, 400)] == (None, runs/'mpvae_seed0'/'snap_400.pth')
    with pytest.raises(FileNotFoundError, match='no such folder'):
        lc.evaluate_runs(runs, baseline_evals=tmp_path/'missing')

def test_compare_over_a_long_budget_keeps_the_doublings(tmp_path):
    "Nine chunks: the NELBO table keeps chunks 1, 2, 4, 8 and the budget's (9), not nine columns."
    d = tmp_path/'ref'/'baseline_seed0'; d.mkdir(parents=True)
    rows = [dict(chunk=k, images=640*k, train_loss=1., valid_loss=1., recon=1., kl1=1., nelbo=100. - k, seconds=1.,
                 img_per_s=640., cpu_time=1., layout='cl', beta_weight=1.) for k in range(1, 10)]
    with open(d/'history.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0])); w.writeheader(); w.writerows(rows)
    (d/'config.json').write_text(json.dumps(dict(model='vae', seed=0, beta=4.0, bs=64, lr=1e-4, schedule='const', precision='fp32')))
    cli.curves_main(['compare', '--reference', str(tmp_path/'ref'), '--reference-name', 'ref', str(tmp_path/'ref'),
             '--images', str(640*9), '--out', str(tmp_path/'out'), '--notes', '', '--name', 'long'])
    md = (tmp_path/'out'/'long.md').read_text()
    assert '| NELBO at 640 | NELBO at 1,280 | NELBO at 2,560 | NELBO at 5,120 | NELBO at 5,760 | recon at end |' in md
    assert '| ref | baseline | 0 | constant lr 0.0001, batch 64, beta 4 | cl | 99.00 | 98.00 | 96.00 | 92.00 | 91.00 |' in md


def test_csvlog_history_gets_throughput_and_layout(tmp_path):
    "An mpvae-train run's history.csv (CSVLog: epoch times as m:ss, no layout) gives img/s per chunk and run.json's layout."
    run = tmp_path/'mpvae_seed0'; run.mkdir()
    (run/'history.csv').write_text('epoch,train_loss,valid_loss,nelbo,time,images\n0,2.0,2.0,2.0,02:00,76800\n1,1.0,1.0,1.0,1:04:00,153600\n')
    (run/'run.json').write_text(json.dumps({'precision': {'precision': 'fp32', 'channels_last': True}}))
    rows = lc.run_history(run)
    assert [r['chunk'] for r in rows] == [1, 2]
    assert rows[0]['img_per_s'] == pytest.approx(76800 / 120) and rows[1]['img_per_s'] == pytest.approx(76800 / 3840)
    assert {r['layout'] for r in rows} == {'cl'}
