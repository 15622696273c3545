"""The table notebooks end to end, as a user runs them: `mpvae-tables --preset smoke` through papermill.

dSprites uses the package's rendered grid (cached under $MPVAE_DATA or ~/.cache/mpvae); CelebA uses a small folder in
CelebA's layout that this test builds. The smoke preset's numbers mean nothing; what is checked is that every
artefact is produced and is well formed (`check_smoke_run`, on the run tests/test_package.py makes from the wheel), that
a failing notebook gives a non-zero exit naming the cell, sweeps, resumed runs and the pretrained presets' guards."""
import json, os, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = Path(sys.executable).parent/'mpvae-tables'
# the other xdist worker keeps one core busy: one torch thread per kernel (oversubscribed threads are many times slower here)
ENV = {**os.environ, 'OMP_NUM_THREADS': os.environ.get('MPVAE_TEST_THREADS', '1')}

def check_smoke_run(out:Path, stdout:str, cwd:Path):
    """What `mpvae-tables --preset smoke --tables dsprites celeba --out OUT` (CelebA: a folder `make_celeba_folder` built)
    must leave in OUT and print: every artefact well formed, and the terminal showing the run as it goes.

    One such run costs two minutes, so it is made once, from the installed wheel, by `test_wheel_runs_the_tables`
    (tests/test_package.py), whose notebooks and library are this clone's (it checks that too)."""
    for t, labels in (('dsprites', ['shape', 'scale', 'orientation', 'posX', 'posY']), ('celeba', None)):
        d = out/t
        res = json.loads((d/'results.json').read_text())
        assert res['table'] == t and res['preset'] == 'smoke'
        assert set(res['rows']) == {'baseline', 'z1', 'z2', 'z1+z2'}
        if labels: assert res['labels'] == labels
        else: assert len(res['labels']) == 40
        for row in res['rows'].values():
            assert 0 <= row['mean']['mean'] <= 100 and row['mean']['n_runs'] == (2 if res['probe']['kind'] == 'logreg_cv' else 4)   # 2 splits (x 2 seeds where the probe has randomness)
        assert res['ordering']['verdict'] in ('holds', 'within noise', 'reversed')
        prec = res['precision']['0']                     # the precision each model trained in ('auto' chooses per machine)
        assert set(prec) == {'baseline', 'mpvae'}, prec
        assert all(p['precision'] in ('fp32', 'bf16') and isinstance(p['channels_last'], bool) for p in prec.values()), prec
        assert (d/'table.md').read_text().startswith('| features')
        assert (d/TABLES[t]).exists(), "the executed notebook is kept"
        for f in res['figures']: assert (cwd/f).stat().st_size > 1000   # (cwd/f is f where f is absolute)
    dres = json.loads((out/'dsprites'/'results.json').read_text())
    assert dres['disentanglement'] and 'mig' in dres['disentanglement']
    assert 'Disentanglement per path (the models of representation seed 0' in (out/'dsprites'/'table.md').read_text()
    assert (out/'celeba'/'results.json').read_text().count('"synthetic": false') == 1   # it used the folder we built
    summary = (out/'summary.md').read_text()
    assert '55.19' in summary and '82.02' in summary    # the paper's numbers beside ours
    check_progress_lines(stdout)

def check_progress_lines(stdout):
    "The terminal's progress, in order: per model and epoch, then the probes' and the metrics' cells, for each table."
    lines = stdout.splitlines()
    def at(pattern, after=-1):
        hits = [i for i, l in enumerate(lines) if i > after and re.search(pattern, l)]
        assert hits, f"no line after line {after} matches {pattern!r}:\n" + '\n'.join(lines[max(0, after):][:40])
        return hits[0]
    num, t = r'[-+.\de]+', r'\d+:\d\d'
    i = at(r'running dsprites')
    # the smoke preset: 1,024 images per model in 2 epochs; a baseline and an MPVAE for seed 0 -> 2 models in the job
    for k, model in enumerate(('baseline_seed0', 'mpvae_seed0'), 1):
        for e, seen in ((1, '512'), (2, '1,024')):
            i = at(rf'^\d\d:\d\d:\d\d \[dsprites\] {model} seed 0 \| epoch {e}/2 \| {seen}/1,024 images \| train {num} valid {num} \| '
                   rf'[\d,]+ img/s \| model {t} elapsed, ETA {t} \| job: model {k}/2, {t} elapsed, ETA {t} of training'
                   rf'( \| collapse: z[\d, z]+ < 0\.01 nats)?$', i)   # a tiny run's paths may not have left zero KL yet: said
    assert re.search(r'ETA 0:00 of training( \||$)', lines[i]), lines[i]      # the last epoch of the last model: no training left
    i = at(r'\[dsprites\] cell \d+/\d+: training, encoding, probes done in ', i)
    i = at(r'\[dsprites\] cell \d+/\d+: disentanglement metrics \.\.\.$', i)
    i = at(r'\[dsprites\] cell \d+/\d+: disentanglement metrics done in ', i)
    i = at(r'\[mpvae-tables\] dsprites: done in', i)
    i = at(r'running celeba', i)
    for k, model in enumerate(('baseline_seed0', 'mpvae_seed0'), 1):
        i = at(rf'\[celeba\] {model} seed 0 \| epoch 1/1 \| [\d,]+/[\d,]+ images \| train {num} valid {num} \| .* job: model {k}/2, ', i)
    i = at(r'\[celeba\] cell \d+/\d+: training, encoding, probes done in ', i)
    at(r'\[mpvae-tables\] celeba: done in', i)
    assert 'Executing:' not in stdout       # papermill's cell bar is replaced by the lines

TABLES = {'dsprites': '10_table_dsprites.ipynb', 'celeba': '11_table_celeba.ipynb'}

@pytest.mark.xdist_group('tables')
def test_failing_notebook_is_reported(tmp_path):
    "A run that passes the parameter checks but fails inside the notebook (a data_root without CelebA's files): exit code 1, and the message names the job, the cell and the error."
    out, empty = tmp_path/'results', tmp_path/'not_celeba'
    empty.mkdir()
    r = subprocess.run([str(CLI), '--preset', 'smoke', '--tables', 'celeba', '--out', str(out), '-p', f'data_root="{empty}"'],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600, env=ENV)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-5000:]
    assert 'FAILED' in r.stderr and 'celeba' in r.stderr and 'is missing: a CelebA folder holds' in r.stderr, r.stderr[-3000:]
    assert 'FAILED at cell' in (out/'summary.md').read_text()
    assert not (out/'celeba'/'results.json').exists()

# a dSprites job small enough that two of them in parallel take well under a minute here (the numbers mean nothing)
TINY = ['-p', 'train_images=256', '-p', 'epochs=1', '-p', 'probe_pool=600', '-p', 'probe_train=300', '-p', 'probe_valid=150',
        '-p', 'metrics="none"', '-p', 'figures=false']

@pytest.mark.xdist_group('tables')
def test_parallel_seed_sweep_is_aggregated(tmp_path):
    "Two seeds as two parallel jobs: each writes its own table, each kernel gets its share of the cores, and the summary combines them."
    out = tmp_path/'results'
    env = {k: v for k, v in ENV.items() if k not in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')}
    r = subprocess.run([str(CLI), '--preset', 'smoke', '--tables', 'dsprites', '--seeds', '0', '1', '--workers', '2',
                        '--out', str(out), *TINY], capture_output=True, text=True, cwd=tmp_path, timeout=900, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert '2 at a time' in r.stdout
    res = [json.loads((out/f'dsprites-seed{s}'/'results.json').read_text()) for s in (0, 1)]
    share = max(1, len(os.sched_getaffinity(0))//2)
    summary = (out/'summary.md').read_text()
    for s, rs in enumerate(res):
        assert rs['params']['rep_seeds'] == [s]
        assert rs['params']['threads'] == share      # the kernel's torch threads: its share of the cores, not all of them
        assert json.loads((out/f'dsprites-seed{s}'/'job.json').read_text())['ok'] is True
        assert re.search(rf"\| dsprites-seed{s} \| ok \| [\d.]+ min \| {share} \|", summary)
    assert '## Sweep: dsprites over seeds 0, 1 (2 jobs)' in summary and 'n = 2 representation seeds' in summary
    assert 'FAILED' not in summary
    sweep = json.loads((out/'sweep.json').read_text())['sweeps']
    assert len(sweep) == 1 and sweep[0]['seeds'] == [0, 1] and sweep[0]['failed'] == []
    comb = sweep[0]['cells'][0]['results']
    for key in res[0]['rows']:
        for cell, parts in [(comb['rows'][key]['mean'], [rs['rows'][key]['mean'] for rs in res])] + \
                           [(comb['rows'][key]['acc'][l], [rs['rows'][key]['acc'][l] for rs in res]) for l in res[0]['labels']]:
            a, b = parts[0]['mean'], parts[1]['mean']
            assert cell['n_seeds'] == 2 and cell['per_seed'] == pytest.approx([a, b])
            assert cell['mean'] == pytest.approx((a + b)/2)
            assert cell['std_seeds'] == pytest.approx(abs(a - b)/2**0.5)      # sample std of two numbers
    m = comb['rows']['z1+z2']['mean']
    assert f"{m['mean']:.2f} ± {m['std_runs']:.2f} (seeds ± {m['std_seeds']:.2f})" in summary
    assert comb['ordering']['unit'] == 'representation seeds'

@pytest.mark.xdist_group('tables')
def test_failed_job_of_sweep_is_left_out(tmp_path):
    "One beta of a sweep diverges (1e300 passes the checks, overflows float32 and NaNGuard stops it): exit code 1, the job is named as failed, the other still reported."
    out = tmp_path/'results'
    r = subprocess.run([str(CLI), '--preset', 'smoke', '--tables', 'dsprites', '--betas', '4', '1e300', '--workers', '2',
                        '--out', str(out), *TINY], capture_output=True, text=True, cwd=tmp_path, timeout=900, env=ENV)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-5000:]
    assert 'dsprites-beta1e+300: FAILED' in r.stderr and 'non-finite loss' in r.stderr, r.stderr[-3000:]
    summary = (out/'summary.md').read_text()
    assert '1 of 2 jobs FAILED and are left out' in summary and 'dsprites-beta1e+300' in summary
    assert '| beta = 4 | beta = 1e+300 |' in summary and '| FAILED |' in summary
    ok = json.loads((out/'dsprites-beta4'/'results.json').read_text())
    m = ok['rows']['baseline']['mean']['mean']
    assert f"| beta-VAE (z=12) | {m:.2f} (n=1) | FAILED |" in summary
    assert not (out/'dsprites-beta1e+300'/'results.json').exists()
    sweep = json.loads((out/'sweep.json').read_text())['sweeps'][0]
    assert [f['name'] for f in sweep['failed']] == ['dsprites-beta1e+300']
    assert [c['jobs'] for c in sweep['cells']] == [['dsprites-beta4'], []]
    assert (out/'sweep_dsprites.png').exists() is False   # one beta finished: no curve to draw

@pytest.mark.xdist_group('tables')
def test_killed_run_resumes_to_the_same_table(tmp_path):
    "A smoke run killed after its first model is saved, rerun into the same --out, gives the uninterrupted run's rows."
    import signal, time
    args = [str(CLI), '--preset', 'smoke', '--tables', 'dsprites', *TINY]   # three runs: the smallest that trains and probes
    r = subprocess.run(args + ['--out', str(tmp_path/'whole')], capture_output=True, text=True, cwd=tmp_path, timeout=1500, env=ENV)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    out = tmp_path/'killed'
    p = subprocess.Popen(args + ['--out', str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
                         env=ENV, start_new_session=True)
    first = out/'dsprites'/'baseline_seed0.pth'
    t0 = time.time()
    while not first.exists() and p.poll() is None and time.time() - t0 < 1200: time.sleep(0.2)
    assert first.exists() and p.poll() is None, "the run ended before its first model was saved"
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    assert not (out/'dsprites'/'results.json').exists()
    r2 = subprocess.run(args + ['--out', str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=1500, env=ENV)
    assert r2.returncode == 0, r2.stdout[-3000:] + r2.stderr[-5000:]
    assert 'baseline_seed0 seed 0 | reusing baseline_seed0.pth' in r2.stdout, r2.stdout[-3000:]
    a = json.loads((tmp_path/'whole'/'dsprites'/'results.json').read_text())['rows']
    b = json.loads((out/'dsprites'/'results.json').read_text())['rows']
    for key in a:
        assert b[key]['mean']['mean'] == pytest.approx(a[key]['mean']['mean'], abs=1e-9), key
        for lab in a[key]['acc']: assert b[key]['acc'][lab]['mean'] == pytest.approx(a[key]['acc'][lab]['mean'], abs=1e-9)

def test_pretrained_betas_must_match_the_shipped_models(tmp_path):
    "The shipped betas (4, 1) models read with the table's default betas (4, 4): the job fails, naming the betas the models were trained with, and writes no results."
    out = tmp_path/'results'
    r = subprocess.run([str(CLI), '--preset', 'pretrained_lr1e-4_betas4-1', '--tables', 'dsprites', '--out', str(out),
                        '-p', 'mpvae_betas=null', '-p', 'rep_seeds=[0]', *TINY], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600, env=ENV)
    assert r.returncode == 1, r.stdout[-3000:] + r.stderr[-5000:]
    assert 'trained with betas [4.0, 1.0]; pretrained=True needs mpvae_betas=[4.0, 1.0]' in r.stderr, r.stderr[-3000:]
    assert not (out/'dsprites'/'results.json').exists()
