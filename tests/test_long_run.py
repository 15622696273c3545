"""Long runs through `mpvae-train --stop-images` (`MPVAELearner.fit_images`): a run split over several invocations
(sessions), or extended to a larger budget, must be the run made in one go.

Tiny chunks (640 images = 10 steps at batch 64) keep it to seconds; the real runs use 76,800-image chunks.
"""
import csv, os, subprocess, sys
from pathlib import Path
import pytest, torch

TRAIN = str(Path(sys.executable).parent/'mpvae-train')

def run(out, *args):
    cmd = [TRAIN, '--seed', '1', '--precision', 'fp32', '--threads', '1', '--chunk-images', '640', '--lr', '1e-3',
           '--out', str(out), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True)

def state(out): return torch.load(out/'state.pth', map_location='cpu', weights_only=True)

def history(out, drop=('time',)):
    rows = list(csv.reader(open(out/'history.csv')))
    return [[v for v, n in zip(r, rows[0]) if n not in drop] for r in rows]

def test_extended_run_is_the_uninterrupted_run(tmp_path):
    a, b = tmp_path/'a', tmp_path/'b'
    assert run(a, '--stop-images', 1920).returncode == 0
    r1 = run(b, '--stop-images', 640)
    assert r1.returncode == 0 and 'epoch 1/1' in r1.stdout
    r2 = run(b, '--stop-images', 1920)                 # a new process: the next session, with a larger budget
    assert r2.returncode == 0 and 'epoch 3/3' in r2.stdout and 'epoch 1/3' not in r2.stdout, r2.stdout
    for k, v in state(a)['model'].items(): assert torch.equal(v, state(b)['model'][k]), k
    # the record's time spans both sessions (the snapshots' clock, kept in the state), not only the last one
    import json
    ra, rb = (json.loads((d/'run.json').read_text()) for d in (a, b))
    assert rb['images'] == 1920 and 0 < rb['session_seconds'] < rb['train_seconds'] and ra['session_seconds'] > 0
    assert history(a) == history(b) and [r[-1] for r in history(b)] == ['images', '640', '1280', '1920']
    # snapshots at the log-2 epochs and the end, loadable as models that carry their training record
    from mpvae.model import load_model
    assert sorted(p.name for p in b.glob('snap_*')) == ['snap_1280.pth', 'snap_1920.pth', 'snap_640.pth']
    m = load_model(b/'snap_1280.pth')
    assert m.meta['record']['images'] == 1280 and m.meta['record']['steps'] == 20 and m.meta['record']['spec']['lr'] == 1e-3
    # every file the run wrote has the mode open() gives a new file (0644 under umask 022), not mkstemp's 0600
    um = os.umask(0o022); os.umask(um)
    files = [p for p in b.rglob('*') if p.is_file()]               # the model/ folder's files included
    assert {str(p.relative_to(b)): oct(p.stat().st_mode & 0o777) for p in files} == \
           {str(p.relative_to(b)): oct(0o666 & ~um) for p in files}
    assert (b/'model'/'model.safetensors') in files
    # other settings into the same folder: refused in one line naming the difference, the state untouched
    before = (b/'state.pth').read_bytes()
    r3 = run(b, '--stop-images', 2560, '--betas', 4)
    assert r3.returncode == 2 and len(r3.stderr.splitlines()) == 1, r3.stderr
    assert 'betas' in r3.stderr and 'another folder for a new run' in r3.stderr
    assert (b/'state.pth').read_bytes() == before

def test_a_printed_line_means_its_state_is_saved(tmp_path):
    "Stop scripts kill a run right after an epoch's line: that epoch (state and snapshot) must already be on disk."
    out = tmp_path/'k'
    cmd = [TRAIN, '--seed', '1', '--precision', 'fp32', '--threads', '1', '--chunk-images', '640', '--out', str(out),
           '--stop-images', '6400']
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in p.stdout:
            if 'epoch 1/10' in line: break
        p.kill()                                              # at once, as a stop script would
    finally: p.wait()
    assert state(out)['epoch'] == 1 and (out/'snap_640.pth').exists()
    r = run(out, '--stop-images', 1280)
    assert r.returncode == 0 and 'epoch 2/2' in r.stdout and 'epoch 1/2' not in r.stdout

def test_warmup_counts_images_over_the_whole_run(tmp_path):
    "A warm-up longer than one session's chunk: split and whole runs agree only if the ramp is not restarted."
    a, b = tmp_path/'a', tmp_path/'b'
    args = ('--warmup-images', 1000, '--betas', 4, 1)
    assert run(a, '--stop-images', 1280, *args).returncode == 0
    assert run(b, '--stop-images', 640, *args).returncode == 0
    assert run(b, '--stop-images', 1280, *args).returncode == 0
    for k, v in state(a)['model'].items(): assert torch.equal(v, state(b)['model'][k]), k
    assert state(b)['cbs']['RunSpec']['spec']['warmup_images'] == 1000
    assert state(b)['cbs']['RunSpec']['spec']['loss']['betas'] == [4.0, 1.0]

def test_architecture_and_kl_options_reach_the_model_and_the_loss(tmp_path):
    "--extra-channels / --dec-path-channels shape the saved model; --kl-reduce mean is in the settings a resume checks."
    out = tmp_path/'w'
    r = run(out, '--stop-images', 640, '--extra-channels', 96, '--dec-path-channels', 32, 96, '--kl-reduce', 'mean')
    assert r.returncode == 0, r.stderr
    from mpvae.model import MPVAE
    m = MPVAE.from_pretrained(out/'model')
    assert (m.config.extra_channels, m.config.dec_path_channels) == (96, (32, 96))
    w = state(out)['model']   # the deep path's conv: 64 -> 96 channels; path 1's decoder map has 32 channels
    assert [tuple(v.shape[:2]) for k, v in w.items() if v.ndim == 4 and v.shape[0] == 96 and v.shape[1] == 64]
    assert state(out)['cbs']['RunSpec']['spec']['loss']['kl_reduce'] == 'mean'
    r = run(out, '--stop-images', 1280, '--extra-channels', 96, '--dec-path-channels', 32, 96)   # the sum: another run
    assert r.returncode != 0 and 'kl_reduce' in r.stderr, r.stderr
    # the default writes no kl_reduce: the states of runs from before the option resume unchanged
    assert run(tmp_path/'d', '--stop-images', 640).returncode == 0
    assert 'kl_reduce' not in state(tmp_path/'d')['cbs']['RunSpec']['spec']['loss']

@pytest.mark.parametrize('args, says', [
    (['--stop-images', 1000], 'must be a positive multiple of --chunk-images 640'),
    (['--stop-images', 640, '--chunk-images', 100], 'must be a multiple of the global batch 64'),
    (['--stop-images', 640, '--train-images', 640], 'not both'),
    (['--stop-images', 640, '--taps', 4], '--taps gives 1 depths for 2 paths'),
    (['--stop-images', 640, '--warmup-images', -1], '--warmup-images must be >= 0'),
    (['--stop-images', 640, '--lr', 'nan'], '--lr must be a finite number > 0'),
    (['--stop-images', 640, '--dec-path-channels', 64], '--dec-path-channels gives 1 values for 2 paths'),
    (['--stop-images', 640, '--extra-channels', 0], '--extra-channels must be >= 1'),
])
def test_bad_long_run_arguments_are_refused(tmp_path, args, says, capsys):
    "In this process (`mpvae-train`'s main function; tests/test_cli.py runs the script itself): exit 2, one line, nothing written."
    from mpvae.cli import train_main
    rc = train_main(['--seed', '1', '--precision', 'fp32', '--threads', '1', '--chunk-images', '640', '--lr', '1e-3',
                     '--out', str(tmp_path/'x'), *map(str, args)])
    err = capsys.readouterr().err
    assert rc == 2 and says in err and len(err.splitlines()) == 1, err
    assert not (tmp_path/'x').exists()
