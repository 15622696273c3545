"""benchmarks/train_speed.py stays runnable: a tiny run (not a timing) prints and writes every field BENCHMARKS.md quotes.

The script is run as a user runs it (a subprocess with the command line), one thread, 1 warm-up + 2 timed batches,
one round. pythae comes with the dev extra (`make test` installs it); without it the script must say it skipped it,
and the pythae-specific checks are skipped with that reason.
"""
import importlib.util, json, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = ROOT/'benchmarks'/'train_speed.py'
HAS_PYTHAE = importlib.util.find_spec('pythae') is not None


def _run(tmp_path, *args):
    out = tmp_path/'bench.json'
    cmd = [sys.executable, str(SCRIPT), '--iters', '2', '--warmup', '1', '--repeats', '1', '--threads', '1',
           '--json', str(out), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert p.returncode == 0, f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}"
    return p.stdout, json.loads(out.read_text())


@pytest.fixture(scope='module')
def run_all(tmp_path_factory):
    "One tiny run of every contender in both precisions (pythae only when installed)."
    return _run(tmp_path_factory.mktemp('bench'))


def test_fields_and_ratios(run_all):
    stdout, res = run_all
    m = res['machine']
    for k in ('date', 'cpu', 'cores', 'threads', 'device', 'versions', 'loadavg_before', 'loadavg_after'): assert k in m, k
    assert m['threads'] == 1 and m['device'] == 'cpu' and m['versions']['torch']
    st = res['settings']
    assert (st['iters'], st['warmup'], st['repeats'], st['bs']) == (2, 1, 1, 64)
    expected = {'bare/fp32', 'bare/bf16', 'learner/fp32', 'learner/bf16'} | ({'pythae/fp32'} if HAS_PYTHAE else set())
    assert set(res['results']) == expected
    for k, v in res['results'].items():
        # one round: one value of each clock, positive and finite, and the median is that value
        for key, med in (('images_per_s', 'median'), ('cpu_images_per_s', 'cpu_median'), ('fit_images_per_s', 'fit_median')):
            assert len(v[key]) == 1 and 0 < v[key][0] < 1e7 and v[med] == v[key][0], (k, key, v)
        # the whole call contains the timed window plus the warm-up batch: at most (1 + 2)/2 times the window's rate
        assert v['fit_median'] <= 1.5 * v['median'] * 1.001, (k, v)
    r = res['ratios']['learner_over_bare_fp32']
    assert r['target'] == 0.95
    want = res['results']['learner/fp32']['images_per_s'][0] / res['results']['bare/fp32']['images_per_s'][0]
    assert r['wall']['median_of_rounds'] == pytest.approx(want, rel=1e-3)
    assert 'learner_over_bare_bf16' in res['ratios'] and 'bare_bf16_over_bare_fp32' in res['ratios']
    assert res['peak_rss_mb'] > 50
    # the printed report carries the same table and verdicts
    for k in expected: assert k in stdout
    assert 'ratio learner_over_bare_fp32' in stdout and 'target >= 0.95' in stdout and 'load average' in stdout
    # pythae has no CPU autocast: bf16 is skipped with the reason, never silently
    assert 'pythae/bf16' in res['skipped'] or 'pythae' in res['skipped']


def test_pythae_contender(run_all):
    if not HAS_PYTHAE: pytest.skip("pythae is not installed (optional: pip install -e '.[bench]')")
    stdout, res = run_all
    assert 'pythae/fp32' in res['results'] and 'autocast' in res['skipped']['pythae/bf16']
    r = res['ratios']['learner_bf16_over_pythae_fp32']
    assert r['target'] == 1.8 and r['cpu']['median_of_rounds'] > 0


def test_pythae_wraps_the_same_network():
    "pythae's encoder/decoder are our MPVAE's modules: same parameters, and the same function of the input."
    if not HAS_PYTHAE: pytest.skip("pythae is not installed (optional: pip install -e '.[bench]')")
    import torch
    sys.path.insert(0, str(SCRIPT.parent))
    try: import train_speed as ts
    finally: sys.path.remove(str(SCRIPT.parent))
    a = ts.parse_args(['--iters', '1', '--warmup', '1'])
    pm = ts.pythae_model(a, torch.device('cpu'))
    ours = ts.build_model(a)
    n_ours = sum(p.numel() for p in ours.parameters())
    assert sum(p.numel() for p in pm.parameters()) == n_ours      # nothing added, nothing counted twice
    pm.load_state_dict({**{f'encoder.{k}': v for k, v in ours.state_dict().items() if k.startswith(('convs', 'enc_heads'))},
                        **{f'decoder.{k}': v for k, v in ours.state_dict().items() if k.startswith(('dec_heads', 'merge', 'up'))}})
    x = (torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    with torch.no_grad():
        enc = pm.encoder(x)
        mus, logvars = ours.encode_params(x)
        torch.testing.assert_close(enc.embedding, torch.cat(mus, 1))
        torch.testing.assert_close(enc.log_covariance, torch.cat(logvars, 1))
        z = torch.randn(4, sum(ours.latent_dims))
        torch.testing.assert_close(pm.decoder(z).reconstruction, torch.sigmoid(ours.decode([z[:, :3], z[:, 3:]])))


def test_bad_arguments_are_refused(tmp_path):
    p = subprocess.run([sys.executable, str(SCRIPT), '--warmup', '0'], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and 'warmup' in p.stderr


def test_pyspy_breakdown_buckets(tmp_path, capsys):
    "benchmarks/pyspy_breakdown.py on a hand-written raw profile: shares add up and land in the right buckets."
    sys.path.insert(0, str(SCRIPT.parent))
    try: import pyspy_breakdown as pb
    finally: sys.path.remove(str(SCRIPT.parent))
    fit = '<module> (train_speed.py:1);Learner.fit (fastai/learner.py:266)'
    lines = [f'{fit};Learner._do_one_batch (fastai/learner.py:220);forward (mpvae/model.py:200);conv (torch/x.py:1) 60',
             f'{fit};Learner._do_one_batch (fastai/learner.py:225);backward (torch/_tensor.py:600) 30',
             f'{fit};Learner._call_one (fastai/learner.py:185);Callback.__call__ (fastai/callback/core.py:59);NaNGuard.after_backward (mpvae/train.py:170) 6',
             f'{fit};Learner._call_one (fastai/learner.py:185) 4',
             f'{fit};_find_and_load (<frozen importlib._bootstrap>:1176) 50',        # a lazy import: left out
             '<module> (train_speed.py:1);make_images (train_speed.py:90) 99']           # outside the fit: left out
    prof = tmp_path/'raw.txt'; prof.write_text('\n'.join(lines) + '\n')
    pb.main([str(prof)])
    out = capsys.readouterr().out
    assert '100 samples inside the training call (50 more in one-time imports, left out)' in out
    assert ' 60.00%  model forward' in out and ' 30.00%  backward' in out and ' 10.00%  framework' in out
    assert '  6.00%  callback NaNGuard.after_backward' in out and '  4.00%  loop Learner._call_one' in out


def test_learner_overhead_counts_callbacks():
    "benchmarks/learner_overhead.py: a 2-batch epoch; the default callbacks are all counted and cost less than a batch."
    p = subprocess.run([sys.executable, str(SCRIPT.parent/'learner_overhead.py'), '--batches', '2', '--precision', 'bf16'],
                       capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout + p.stderr
    m = re.search(r'([\d.]+) ms of CPU per batch over 2 batches', p.stdout); assert m, p.stdout
    m2 = re.search(r'callbacks ([\d.]+) ms/batch .*data ([\d.]+) ms/batch', p.stdout); assert m2, p.stdout
    assert 0 < float(m2[1]) + float(m2[2]) < float(m[1])
    for handler in ('NaNGuard.after_backward', 'Autocast.after_pred', 'Recorder.after_batch', 'ArrayDataLoader.next batch'):
        assert handler in p.stdout, handler


def test_variant_ab_runs(tmp_path):
    "benchmarks/variant_ab.py stays runnable (not a timing): one round of one step prints a ratio per variant and precision."
    cmd = [sys.executable, str(ROOT/'benchmarks'/'variant_ab.py'), '--variants', 'base', 'lastcl', 'pad2', '--rounds', '1',
           '--iters', '1', '--threads', '1']
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-3000:]
    for prec in ('fp32', 'bf16'):
        for v in ('lastcl', 'pad2'): assert re.search(rf"^{prec} {v} / base: \d+\.\d{{3}}$", p.stdout, re.M), p.stdout

def test_peak_flops_match_a_hand_count():
    "benchmarks/peak.py: the FLOPs of a training step are about 3x the forward FLOPs counted by hand from the layer shapes."
    import torch
    sys.path.insert(0, str(ROOT/'benchmarks'))
    import peak
    from mpvae.model import MPVAE
    m, bs, fwd = MPVAE(latent_dims=(3, 9)), 4, []
    def hook(mod, inp, out):
        i, o = inp[0], out
        if isinstance(mod, torch.nn.ConvTranspose2d):    # each input value meets Cout/groups x k x k weights
            fwd.append(2 * i.numel() * mod.out_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1])
        elif isinstance(mod, torch.nn.Conv2d):           # each output value is a sum over Cin/groups x k x k
            fwd.append(2 * o.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1])
        elif isinstance(mod, torch.nn.Linear): fwd.append(2 * i.numel() * mod.out_features)
    hs = [mod.register_forward_hook(hook) for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    with torch.no_grad(): m(torch.zeros(bs, 1, 64, 64))
    for h in hs: h.remove()
    per_image = sum(fwd) / bs
    step = peak.step_flops((3, 9), bs)
    # backward = input gradients + weight gradients, each as costly as the forward, except the first layer's input gradient
    assert 2.5 * per_image < step <= 3 * per_image * 1.001, (step, per_image)
