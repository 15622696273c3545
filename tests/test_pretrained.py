"""The shipped models: in the wheel's package data, listed with their training records, and Table 2 regenerated from them.

`mpvae-tables --preset pretrained` must give the numbers of the committed report `reports/dsprites_pretrained.json`
(written by the same command when the weights were shipped) within 0.3 points: the probes are seeded, so only
floating-point differences between machines may move them. Those two reproductions (the table, the metrics) take
~7 minutes of the suite's time: they are `slow` (`make test-slow`); `make test` runs the pretrained presets with small
probes (test_three_paths_preset_rows_and_baselines)."""
import json, os, subprocess, sys
from pathlib import Path
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent/'mpvae-tables'
REPORT = ROOT/'reports'/'dsprites_pretrained.json'
ENV = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('MPVAE_TEST_THREADS', '1')}


def test_shipped_models_and_records():
    "Every representation seed ships a baseline and an MPVAE; each loads, and its record says how it was trained."
    from mpvae.pretrained import list_pretrained, load_pretrained, pretrained_dir, pretrained_name
    recs = list_pretrained()
    assert recs, f"no weights in {pretrained_dir()}"
    # every training setting ships a baseline and an MPVAE for each of its seeds, under pretrained_name's names
    assert all(r['kind'] in ('baseline', 'mpvae') and r['data'] in ('dsprites', 'celeba') for r in recs), [r['name'] for r in recs]
    settings = {(r['data'], r['setting']) for r in recs}
    from mpvae.params import PRESETS
    borrowing = {('dsprites', pr['dsprites']['pretrained_setting']) for pr in PRESETS.values() if pr.get('dsprites', {}).get('pretrained_baseline')}
    for data, st in settings:   # a setting ships both models per seed, unless a preset gives its MPVAEs another setting's baselines
        mine = [r for r in recs if (r['data'], r['setting']) == (data, st)]
        kinds = ('mpvae',) if (data, st) in borrowing else ('baseline', 'mpvae')
        assert {(r['name'], r['seed']) for r in mine} == {(pretrained_name(m, st, data), r['seed']) for m in kinds for r in mine}
    assert ('dsprites', '') in settings, 'the default names dsprites_baseline / dsprites_mpvae (used by the pretrained preset) must ship'
    by_name = {(r['name'], r['seed']): r for r in recs}
    for name, pr in PRESETS.items():   # every pretrained preset finds both models of each of its seeds, trained equally long
        for data, p in pr.items():
            if not p.get('pretrained'): continue
            st = p.get('pretrained_setting', ''); bst = p.get('pretrained_baseline') or st
            for s in p['rep_seeds']:
                mp, vae = by_name.get((pretrained_name('mpvae', st, data), s)), by_name.get((pretrained_name('baseline', bst, data), s))
                assert mp and vae, (name, s)
                assert (mp['images'], mp['lr'], mp['bs']) == (vae['images'], vae['lr'], vae['bs']), (name, s)
                default = [3, 9] if data == 'dsprites' else [8, 24]
                assert len(load_pretrained(mp['name'], s).latent_dims) == len(p.get('mpvae_dims', default)), (name, s)
    from mpvae.pretrained import PRETRAINED_NAMES
    assert all(r['description'] for r in recs), [r['name'] for r in recs if r['name'] not in PRETRAINED_NAMES]
    pairs = {}
    for r in recs: pairs.setdefault((r['data'], r['setting'], r['seed']), []).append(r)
    for key, rs in pairs.items():   # the two models of a pair saw the same images with the same settings
        assert len({(r['images'], r['lr'], r['bs'], r['schedule']) for r in rs}) == 1, rs
    from mpvae.dsprites import load_dsprites
    from mpvae.loss import recon_nll
    ds = load_dsprites(progress=False)
    x = ds.images(torch.arange(0, len(ds), len(ds)//256))
    for r in recs:
        assert r['images'] >= 1_000_000 and r['steps'] == r['images'] // r['bs'], r
        assert r['precision'] in ('fp32', 'bf16') and r['cpu'] and r['commit'] and r['train_seconds'] > 0
        m = load_pretrained(r['name'], r['seed'])
        assert all(p.dtype == torch.float32 for p in m.parameters())
        assert (pretrained_dir()/r['file']).stat().st_size < 3_000_000
        if r['data'] != 'dsprites': continue   # CelebA's: tests/test_celeba_real.py, on real faces
        # a trained model reconstructs far better than an untrained decoder (Bernoulli NLL ~ 4096 ln 2 = 2839 nats)
        with torch.no_grad(): nll = float(recon_nll(m.decode(m.encode(x)), x).mean())
        assert nll < 150, f"{r['name']} seed {r['seed']}: reconstruction NLL {nll:.1f} nats, not a trained model"
    with pytest.raises(ValueError, match='shipped ones are'): load_pretrained('dsprites_nosuch')


def test_ship_pretrained_names_and_refusals(tmp_path):
    "tools/ship_pretrained.py ships the longest snapshot pair every seed has, under pretrained_name's names, or nothing."
    sys.path.insert(0, str(ROOT/'tools'))
    from ship_pretrained import main
    from mpvae.model import MPVAE, save_model
    from mpvae.pretrained import list_pretrained
    runs, dest = tmp_path/'runs', tmp_path/'dest'
    for m, s, dims, counts in (('baseline', 1, (12,), (76800, 153600, 307200)), ('mpvae', 1, (3, 9), (76800, 153600)),
                               ('vae', 2, (12,), (76800, 153600, 307200)), ('mpvae', 2, (3, 9), (76800, 153600, 307200))):
        for n in counts: save_model(MPVAE(latent_dims=dims), runs/f'{m}_seed{s}'/f'snap_{n}.pth', record=dict(images=n))
    main(['--runs', str(runs), '--dest', str(dest), '--setting', 'lr1e-4'])
    # 307,200: seed 1's baseline alone, so both seeds ship 153,600 (seed 2 has a pair at 307,200 but the lengths must agree)
    assert sorted((r['name'], r['seed'], r['images']) for r in list_pretrained(dest)) == \
        [(f'dsprites_{m}_lr1e-4', s, 153600) for m in ('baseline', 'mpvae') for s in (1, 2)]
    main(['--runs', str(runs), '--dest', str(tmp_path/'d1'), '--seeds', '2', '--images', '76800'])
    assert sorted((r['name'], r['seed'], r['images']) for r in list_pretrained(tmp_path/'d1')) == \
        [('dsprites_baseline', 2, 76800), ('dsprites_mpvae', 2, 76800)]
    with pytest.raises(SystemExit, match='--images 307,200: not a pair for every seed.*seed 1: 76,800, 153,600;'):
        main(['--runs', str(runs), '--dest', str(tmp_path/'d0'), '--images', '307200'])
    main(['--runs', str(runs), '--dest', str(tmp_path/'dc'), '--seeds', '2', '--data', 'celeba'])   # CelebA runs: celeba_ names
    assert sorted((r['name'], r['data'], r['images']) for r in list_pretrained(tmp_path/'dc')) == \
        [('celeba_baseline', 'celeba', 307200), ('celeba_mpvae', 'celeba', 307200)]
    with pytest.raises(SystemExit, match='without its underscore'): main(['--runs', str(runs), '--dest', str(dest), '--setting', '_x'])
    with pytest.raises(SystemExit, match='no baseline_seed'): main(['--runs', str(tmp_path), '--dest', str(tmp_path/'d0')])
    (runs/'mpvae_seed2'/'snap_153600.pth').write_bytes(b'not a model')   # seed 2's pair is bad: seed 1's must not ship either
    with pytest.raises(SystemExit, match='snap_153600.pth does not load'): main(['--runs', str(runs), '--dest', str(tmp_path/'d2')])
    assert not (tmp_path/'d2').exists() and not (tmp_path/'d0').exists()


def test_ship_pretrained_failed_copy_replaces_nothing(tmp_path, monkeypatch):
    "A write that fails midway (disk full) leaves the shipped models as they were and no temporary folder behind."
    sys.path.insert(0, str(ROOT/'tools'))
    import ship_pretrained
    from mpvae.model import MPVAE, save_model
    from mpvae.pretrained import list_pretrained
    runs, dest = tmp_path/'runs', tmp_path/'dest'
    for m, dims in (('vae', (12,)), ('mpvae', (3, 9))):
        for n in (76800, 153600): save_model(MPVAE(latent_dims=dims), runs/f'{m}_seed0'/f'snap_{n}.pth', record=dict(images=n))
    (runs/'vae_seed0_old').mkdir()   # not a run folder of long_run's naming: ignored, not a crash
    ship_pretrained.main(['--runs', str(runs), '--dest', str(dest), '--images', '76800'])
    tree = lambda: {str(f.relative_to(dest)): f.read_bytes() for f in dest.rglob('*') if f.is_file()}
    before = tree()
    assert sorted({k.split('/')[0] for k in before}) == ['dsprites_baseline_seed0', 'dsprites_mpvae_seed0']
    calls, real = [], ship_pretrained._write
    def flaky(model, folder):
        calls.append(folder)
        if len(calls) == 2: raise OSError(28, 'No space left on device')
        return real(model, folder)
    monkeypatch.setattr(ship_pretrained, '_write', flaky)
    with pytest.raises(SystemExit, match='No space left on device.*nothing shipped'):
        ship_pretrained.main(['--runs', str(runs), '--dest', str(dest)])
    assert len(calls) == 2 and tree() == before
    assert [r['images'] for r in list_pretrained(dest)] == [76800, 76800]


def test_weights_are_package_data():
    "pyproject's package-data patterns take every file of every shipped model folder into the wheel (what `pip install` gets)."
    import tomllib
    cfg = tomllib.loads((ROOT/'pyproject.toml').read_text())
    data = cfg['tool']['setuptools']['package-data']['mpvae']
    lib = ROOT/'mpvae'
    shipped = {p for p in (lib/'pretrained').rglob('*') if p.is_file()}
    taken = {p for pat in data for p in lib.glob(pat) if p.is_file()}
    assert shipped and shipped <= taken, sorted(str(p) for p in shipped - taken)
    names = {p.parent.name for p in shipped}
    assert all({'config.json', 'model.safetensors', 'meta.json'} <= {p.name for p in shipped if p.parent.name == n} for n in names)
    assert not any(p.suffix == '.pth' for p in shipped)   # no pickle-format file ships


@pytest.mark.slow
def test_pretrained_preset_reproduces_report(tmp_path):
    "`mpvae-tables --preset pretrained`: no training, Table 2 within 0.3 points of the committed report (the metrics: next test)."
    ref = json.loads(REPORT.read_text())
    # metrics=none: the metrics cost as much as the probes, and the next test checks them in-process on its own worker;
    # figures=false: the figures are the smoke run's to check (tests/test_tables.py, check_smoke_run)
    r = subprocess.run([str(CLI), '--preset', 'pretrained', '--tables', 'dsprites', '--out', str(tmp_path), '-p', 'metrics=none',
                        '-p', 'figures=false'],
                       capture_output=True, text=True, cwd=tmp_path, timeout=1500, env=ENV)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    res = json.loads((tmp_path/'dsprites'/'results.json').read_text())
    assert res['params']['pretrained'] is True and res['pretrained_records']
    assert not {'train_images', 'epochs', 'lr', 'precision'} & set(res['params']), 'a pretrained run lists training it did not do'
    assert not list((tmp_path/'dsprites').glob('*_history.csv')), "the pretrained preset must not train"
    assert 'precision' not in res                     # no training here: no training precision to report
    assert not res.get('disentanglement')             # metrics=none was honoured
    for key, row in ref['rows'].items():
        assert abs(res['rows'][key]['mean']['mean'] - row['mean']['mean']) <= 0.3, (key, res['rows'][key]['mean'], row['mean'])
        for lab, a in row['acc'].items():
            assert abs(res['rows'][key]['acc'][lab]['mean'] - a['mean']) <= 0.3, (key, lab)
    assert res['ordering']['verdict'] == ref['ordering']['verdict']


@pytest.mark.slow
def test_pretrained_metrics_reproduce_report():
    "MIG, SAP and DCI of the shipped seed-0 models, computed as the table notebook computes them, equal the committed report's."
    from mpvae.dsprites import load_dsprites
    from mpvae.disentangle import evaluate_paths, encoder_fn
    from mpvae.pretrained import load_pretrained
    ref = json.loads(REPORT.read_text())['disentanglement']
    assert ref['index'] == ['beta-VAE z', 'beta-MPVAE z1', 'beta-MPVAE z2', 'beta-MPVAE z1+z2']
    ds = load_dsprites(None)
    got = {m: [] for m in ('mig', 'sap', 'dci_disentanglement')}
    for name, pn in (('dsprites_baseline', ['z']), ('dsprites_mpvae', ['z1', 'z2'])):
        m = load_pretrained(name, 0)
        df = evaluate_paths(data=ds, representation_fn=encoder_fn(m), path_names=pn, metrics=('mig', 'dci', 'sap'), seed=0, tabulate=50_000)
        for k in got: got[k] += list(df[k])
    for k, v in got.items():
        assert max(abs(a - b) for a, b in zip(v, ref[k])) <= 0.003, (k, v, ref[k])


def test_table_report_pretrained(tmp_path):
    "mpvae-report on a pretrained run: records as sentences, paths made relative; an unfinished run writes nothing."
    from mpvae.cli import report_main as main   # mpvae-report
    run, rep = tmp_path/'out'/'dsprites', tmp_path/'reports'
    run.mkdir(parents=True); rep.mkdir()
    rec = dict(images=2457600, steps=38400, bs=64, schedule='const', lr=1e-4, precision='fp32', train_seconds=7200, cpu='AMD EPYC', commit='abc1234')
    res = dict(preset='pretrained_lr1e-4', params=dict(pretrained=True, pretrained_setting='lr1e-4'),
               pretrained_records={'0': dict(vae=rec, mpvae=rec)}, figures=[str(run/'vs_paper.png')],
               probe=dict(pool=20000, n_splits=5, n_seeds=5, kind='logreg', train_size=10000, valid_size=5000))
    (run/'results.json').write_text(json.dumps(res)); (run/'table.md').write_text('| features |\n')
    with pytest.raises(SystemExit, match='did not finish'): main([str(tmp_path/'out'), '--name', 'r', '--reports', str(rep)])
    assert not list(rep.iterdir())
    for f in ('vs_paper', 'kl_mpvae', 'traversals_mpvae'): (run/f'{f}.png').write_bytes(b'png')
    main([str(tmp_path/'out'), '--name', 'r', '--reports', str(rep)])
    main([str(tmp_path/'out'), '--name', 'r', '--reports', str(tmp_path/'new'/'reports')])   # a folder not there yet is made
    assert sorted(f.name for f in (tmp_path/'new'/'reports').iterdir()) == sorted(f.name for f in rep.iterdir())
    md = (rep/'r.md').read_text()
    assert '- seed 0, mpvae: 2,457,600 images (38,400 steps at batch 64), const lr 0.0001, fp32, 2.0 h' in md
    assert '| features |' in md and '![](r_traversals_mpvae.png)' in md and (rep/'r_kl_mpvae.png').read_bytes() == b'png'
    assert json.loads((rep/'r.json').read_text())['figures'] == ['vs_paper.png']
    # results.json said 'vae' (the baseline's name before 2026-12-04): the report is in today's name
    assert '- seed 0, baseline: 2,457,600 images' in md and set(json.loads((rep/'r.json').read_text())['pretrained_records']['0']) == {'baseline', 'mpvae'}
    del res['pretrained_records']; (run/'results.json').write_text(json.dumps(res))
    with pytest.raises(SystemExit, match='lists no pretrained_records'): main([str(tmp_path/'out'), '--name', 'q', '--reports', str(rep)])
    assert not (rep/'q.md').exists()


def test_table_report_trained(tmp_path, capsys):
    "mpvae-report on a run that trained its models: how (images, steps, lr, betas, the precision chosen), where, how long; notes in between."
    from mpvae.cli import report_main as main   # mpvae-report
    run, rep = tmp_path/'out'/'dsprites', tmp_path/'reports'
    run.mkdir(parents=True)
    fp32cl = dict(precision='fp32', channels_last=True, auto=dict(source='measured'))
    res = dict(preset='paper', data_source='rendered', elapsed_s=3786, figures=[str(run/'vs_paper.png')],
               params=dict(pretrained=False, baseline_dims=[12], mpvae_dims=[3, 9], beta=4.0, mpvae_betas=[4.0, 1.0],
                           train_images=450_000, epochs=6, bs=64, lr=1e-4, precision='auto', rep_seeds=[0, 1], threads=2, cpu='AMD EPYC'),
               times=dict(train_seed0=1794, train_seed1=1734, disentanglement=124),
               precision={'0': dict(vae=fp32cl, mpvae=fp32cl), '1': dict(vae=fp32cl, mpvae=fp32cl)},
               probe=dict(pool=20000, n_splits=5, n_seeds=5, kind='logreg', train_size=10000, valid_size=5000))
    (run/'results.json').write_text(json.dumps(res)); (run/'table.md').write_text('| features |\n')
    for f in ('vs_paper', 'kl_mpvae', 'traversals_mpvae'): (run/f'{f}.png').write_bytes(b'png')
    args = [str(tmp_path/'out'), '--name', 'p', '--reports', str(rep)]
    with pytest.raises(SystemExit, match='2'): main(args + ['--notes', str(tmp_path/'none.md')])   # exit 2, one line:
    assert 'none.md: no such file' in capsys.readouterr().err
    assert not rep.exists() or not list(rep.iterdir())
    (tmp_path/'notes.md').write_text('Our reading of it.\n')
    main(args + ['--notes', str(tmp_path/'notes.md')])
    md = (rep/'p.md').read_text()
    assert md.startswith("# dSprites, `paper` preset: Table 2 from models trained in the run, 2 seeds")
    assert '450,000 images (7,031 Adam steps at batch 64, constant lr 1e-4, 6 logging epochs)' in md       # 450,000 // 64
    assert 'beta 4 (baseline), (4.0, 1.0) (MPVAE paths)' in md and "the package's rendered dSprites grid" in md
    assert "precision `auto` (it chose float32 with channels-last here)" in md
    assert 'Wall time 63.1 min on AMD EPYC with 2 threads (training 29.9, 28.9 min per seed, both models; metrics 2.1 min)' in md
    assert md.index('Probe protocol') < md.index('Our reading of it.') < md.index('| features |')   # header, notes, table


SMALL = ['-p', 'rep_seeds=[0]', '-p', 'probe_pool=1500', '-p', 'probe_train=600', '-p', 'probe_valid=300', '-p', 'n_splits=2',
         '-p', 'metrics=none', '-p', 'figures=false']

def test_three_paths_preset_rows_and_baselines(tmp_path):
    "`--preset pretrained_three_paths` (small probes): every group of the 3 paths is a row, and its baselines probe exactly as the 2-path preset's."
    out = {}
    for preset in ('pretrained_three_paths', 'pretrained_lr1e-4_betas4-1'):
        r = subprocess.run([str(CLI), '--preset', preset, '--tables', 'dsprites', '--out', str(tmp_path/preset), *SMALL],
                           capture_output=True, text=True, cwd=tmp_path, timeout=900, env=ENV)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
        out[preset] = json.loads((tmp_path/preset/'dsprites'/'results.json').read_text())
    three, two = out['pretrained_three_paths'], out['pretrained_lr1e-4_betas4-1']
    for preset, res in out.items():   # a pretrained run trains nothing and lists no training it did not do
        assert res['params']['pretrained'] is True and res['pretrained_records'], preset
        assert not {'train_images', 'epochs', 'lr', 'precision'} & set(res['params']), preset
        assert 'precision' not in res and not res.get('disentanglement'), preset   # metrics=none was honoured
        assert not list((tmp_path/preset/'dsprites').glob('*_history.csv')), f"{preset} must not train"
    assert list(three['rows']) == ['baseline', 'z1', 'z2', 'z3', 'z1+z2', 'z1+z3', 'z2+z3', 'z1+z2+z3']
    assert [three['rows'][k]['dims'] for k in ('z1', 'z2', 'z3', 'z1+z3', 'z1+z2+z3')] == [3, 3, 6, 9, 12]
    assert three['ordering']['hi'] == 'z1+z2+z3' and "(z1+z2+z3 beats the baseline" in (tmp_path/'pretrained_three_paths'/'dsprites'/'table.md').read_text()
    assert three['rows']['baseline'] == two['rows']['baseline']   # the same shipped baseline, pool and splits: the same numbers
    rec = three['pretrained_records']['0']
    assert rec['mpvae']['images'] == rec['baseline']['images'] == 3_072_000


# seed 2's final snapshot was never committed (only its run's log and record are): its weights cannot be compared with
# the run's; its shipped record is compared with the run's log instead (test_shipped_three_paths_records_match_their_runs)
THREE_SNAPSHOTS = {0: 'snap_3072000.pth', 1: 'snap_3072000.pth'}

def test_shipped_three_paths_equal_their_runs():
    "The shipped three-path models are the runs' final snapshots, weight for weight, tapped at 8x8, 4x4 and 2x2."
    import torch
    from mpvae.model import load_model
    from mpvae.pretrained import load_pretrained, pretrained_seeds
    assert pretrained_seeds('mpvae')['lr1e-4_paths3-3-6'] == [0, 1, 2]
    for s, f in THREE_SNAPSHOTS.items():
        m = load_pretrained('dsprites_mpvae_lr1e-4_paths3-3-6', s)
        assert m.latent_dims == (3, 3, 6) and tuple(m.config.taps) == (3, 4, 5)
        snap = ROOT/'runs'/'three'/f'mpvae3_seed{s}'/f
        assert snap.exists(), f"{snap} is missing: it is what shipped seed {s} is compared with"
        ref = load_model(snap).state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in m.state_dict().items()), s

def test_shipped_three_paths_records_match_their_runs():
    "Every shipped three-path seed carries its run's last log row and length (the weights: see the test above)."
    import csv
    from mpvae.pretrained import load_pretrained
    for s in (0, 1, 2):
        rec = load_pretrained('dsprites_mpvae_lr1e-4_paths3-3-6', s).meta['record']
        last = list(csv.DictReader(open(ROOT/'runs'/'three'/f'mpvae3_seed{s}'/'history.csv')))[-1]
        assert rec['images'] == int(last['images']) == 3_072_000, s
        assert rec['last']['nelbo'] == pytest.approx(float(last['nelbo']), abs=1e-4), s
