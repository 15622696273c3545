"""`tools/long_run.py`: a run split over several invocations (sessions) must be the run made in one go.

Tiny chunks (640 images = 10 steps at batch 64) keep it to seconds; the real runs use 76,800-image chunks.
"""
import json, subprocess, sys, time
import pytest, torch

def run(root, out, *args):
    cmd = [sys.executable, str(root/'tools'/'long_run.py'), '--model', 'mpvae', '--seed', '1', '--precision', 'fp32',
           '--threads', '1', '--chunk-images', '640', '--out', str(out), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=root)

def state(out): return torch.load(out/'state.pth', map_location='cpu', weights_only=False)

def test_resumed_run_is_the_uninterrupted_run(root, tmp_path):
    a, b = tmp_path/'a', tmp_path/'b'
    assert run(root, a, '--stop-images', 1280).returncode == 0
    r1 = run(root, b, '--stop-images', 640)
    assert r1.returncode == 0 and 'chunk 1/1' in r1.stdout
    r2 = run(root, b, '--stop-images', 1280)                 # a new process: the next session
    assert r2.returncode == 0 and 'resumed from' in r2.stdout and 'chunk 2/2' in r2.stdout
    sa, sb = state(a), state(b)
    keys = ('images', 'train_loss', 'valid_loss', 'recon', 'kl1', 'kl2', 'nelbo')
    assert [[h[k] for k in keys] for h in sa['history']] == [[h[k] for k in keys] for h in sb['history']]
    for k, v in sa['model'].items(): assert torch.equal(v, sb['model'][k]), k
    # snapshots at chunks 1 and 2 (powers of two), loadable as models that carry their training record
    from mpvae.model import load_model
    m = load_model(b/'snap_1280.pth')
    assert m.meta['record']['images'] == 1280 and m.meta['record']['steps'] == 20
    assert (b/'snap_640.pth').exists()
    # other settings into the same folder: refused, naming both configurations
    r3 = run(root, b, '--stop-images', 1920, '--lr', '1e-4')
    assert r3.returncode != 0 and 'was written with' in r3.stderr and 'use another --out' in r3.stderr
    # the settings beside history.csv are the run's own, not the refused ones
    assert json.loads((b/'config.json').read_text()) == state(b)['cfg'] and state(b)['cfg']['lr'] == 1e-3

def test_a_printed_chunk_line_means_its_state_is_saved(root, tmp_path):
    "Stop scripts kill a run right after a chunk's line: that chunk (state and snapshot) must already be on disk."
    out = tmp_path/'k'
    cmd = [sys.executable, str(root/'tools'/'long_run.py'), '--model', 'mpvae', '--seed', '1', '--precision', 'fp32',
           '--threads', '1', '--chunk-images', '640', '--out', str(out), '--stop-images', '6400']
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=root)
    try:
        for line in p.stdout:
            if 'chunk 1/10' in line: break
        p.kill()                                              # at once, as a stop script would
    finally: p.wait()
    assert [h['images'] for h in state(out)['history']] == [640] and (out/'snap_640.pth').exists()
    r = run(root, out, '--stop-images', 1280)
    assert r.returncode == 0 and 'resumed from' in r.stdout and 'at 640 images' in r.stdout

def test_one_cycle_prints_each_chunk_as_it_ends(root, tmp_path):
    "A one-cycle run (not resumable) still reports progress chunk by chunk, not all at once after the whole fit."
    cmd = [sys.executable, str(root/'tools'/'long_run.py'), '--model', 'mpvae', '--seed', '1', '--precision', 'fp32', '--threads', '1',
           '--chunk-images', '640', '--schedule', 'one_cycle', '--lr', '3e-3', '--out', str(tmp_path/'c'), '--stop-images', '1920']
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=root)
    got = [(time.time(), l) for l in p.stdout if ' chunk ' in l]
    assert p.wait() == 0 and [l.split()[4] for _, l in got] == ['1/3', '2/3', '3/3']
    secs = [640/float(l.split('|')[1].split()[0]) for _, l in got]   # each chunk's own time, from its img/s
    assert got[2][0] - got[0][0] > 0.5*(secs[1] + secs[2])           # chunk 1's line came while chunks 2 and 3 trained
    assert [h['images'] for h in state_csv(tmp_path/'c')] == [640, 1280, 1920]

def state_csv(out):
    import csv
    with open(out/'history.csv') as f: return [dict(r, images=int(r['images'])) for r in csv.DictReader(f)]

def test_warmup_counts_images_over_the_whole_run(root, tmp_path):
    out = tmp_path/'w'
    assert run(root, out, '--stop-images', 640, '--warmup-images', 1000, '--betas', 4, 1).returncode == 0
    assert run(root, out, '--stop-images', 1280, '--warmup-images', 1000, '--betas', 4, 1).returncode == 0
    h = state(out)['history']
    # the weight of the last batch of each chunk: (images before that batch) / 1000, capped at 1 -- not restarted per chunk
    assert h[0]['beta_weight'] == pytest.approx(576/1000) and h[1]['beta_weight'] == 1.0
    assert state(out)['cfg']['betas'] == [4.0, 1.0]

def test_bad_arguments_are_refused(root, tmp_path):
    r = run(root, tmp_path/'x', '--stop-images', 1280, '--betas', 4)
    assert r.returncode == 2 and 'one value per path' in r.stderr
    r = run(root, tmp_path/'x', '--stop-images', 100)
    assert r.returncode == 2 and 'at least one chunk' in r.stderr
    assert not (tmp_path/'x').exists()
