"""The console scripts reject bad input before doing any work: unknown or mistyped names, values of the wrong type,
numbers out of range. Each mistake is exit status 2, one line on stderr naming the problem, and nothing written.

The expectations below come from the table notebooks' parameter cells and the CLI's documented options, not from the
code under test: e.g. dSprites' `train_images` defaults to the whole number 1_024, so `3e6` (a float) is refused."""
import os, subprocess, sys
from pathlib import Path
import pytest

BIN = Path(sys.executable).parent
ENV = {**os.environ, 'OMP_NUM_THREADS': '1'}

def run(script, *args, cwd):
    r = subprocess.run([str(BIN/script), *args], capture_output=True, text=True, cwd=cwd, timeout=300, env=ENV)
    return r.returncode, r.stdout, r.stderr

MAINS = {'mpvae-tables': 'tables_main', 'mpvae-train': 'train_main', 'mpvae-pretrained': 'pretrained_main'}

def call(script, *args, cwd, capsys, monkeypatch):
    "`run`'s result from the console script's main function in this process (a new process costs ~4 s of imports)."
    import mpvae.cli
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try: rc = getattr(mpvae.cli, MAINS[script])(list(args))
    except SystemExit as e: rc = e.code
    out = capsys.readouterr()
    return rc, out.out, out.err

def one_line(err):
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]

@pytest.mark.parametrize('args, says', [
    (['-p', 'nosuchparam=3'], ["nosuchparam: no such parameter in dsprites", "train_images=1024", "rep_seeds=[0]", "data_path=None"]),
    (['-p', 'train_image=3000000'], ["did you mean train_images?"]),
    (['-p', 'train_images=3e6'], ["train_images", "must be a whole number >= 1", "write 3000000"]),
    (['-p', 'rep_seeds=3'], ["-p rep_seeds=3:", "must be a non-empty list of distinct whole numbers >= 0"]),
    (['-p', 'mpvae_dims=[3, 9.5]'], ["-p mpvae_dims=[3, 9.5]:", "whole numbers >= 1"]),
    (['-p', 'lr=fast'], ["-p lr=\"fast\":", "must be a finite number > 0"]),
    (['-p', 'figures=1'], ["-p figures=1:", "must be true or false"]),
    (['-p', 'precision=16'], ["-p precision=16:", 'one of "auto", "fp32", "bf16", "fp16"']),
    (['-p', 'bs=-5'], ["-p bs=-5:", "bs must be a whole number >= 1"]),
    (['-p', 'probe_pool=0'], ["-p probe_pool=0:", "probe_pool must be a whole number >= 1 and <= 737,280"]),
    (['-p', 'mpvae_dims=[]'], ["-p mpvae_dims=[]:", "non-empty list"]),
    (['-p', 'mpvae_dims=[3,-9]'], ["-p mpvae_dims=[3, -9]:", "whole numbers >= 1"]),
    (['-p', 'probe_train=2000'], ["probe_train + probe_valid (2,000 + 300) must be <= probe_pool (1,500)"]),
    (['--out', 'a_file.txt'], ["--out a_file.txt is a file, not a folder"]),
    (['-p', 'data_root="/x"'], ["data_root: no such parameter in dsprites"]),      # CelebA's, not dSprites'
    (['-p', 'out_dir="x"'], ["use --out"]),
    (['-p', 'bs'], ["-p expects NAME=VALUE"]),
    (['--epoch', '3'], ["unrecognized arguments: --epoch 3"]),
    (['--preset', 'huge'], ["invalid choice: 'huge'"]),
    (['--workers', '0'], ["workers must be a whole number >= 1"]),
])
def test_tables_rejects_bad_input(tmp_path, args, says, capsys, monkeypatch):
    out = tmp_path/'results'
    (tmp_path/'a_file.txt').write_text('not a folder')
    rc, stdout, err = call('mpvae-tables', '--preset', 'smoke', '--tables', 'dsprites', '--out', str(out), *args, cwd=tmp_path,
                           capsys=capsys, monkeypatch=monkeypatch)
    assert rc == 2, (stdout, err)
    line = one_line(err)
    assert line.startswith('mpvae-tables: '), line
    for s in says: assert s in line, line
    assert not out.exists(), "something was written before the input was checked"
    assert '[mpvae-tables] running' not in stdout

def test_tables_parameter_of_one_table_goes_to_that_table(tmp_path):
    "With two tables, a parameter only CelebA has is accepted; a wrong type is still caught for the table that has it."
    rc, _, err = run('mpvae-tables', '--tables', 'dsprites', 'celeba', '--out', str(tmp_path/'r'), '-p', 'synthetic_n=ten', cwd=tmp_path)
    assert rc == 2 and "-p synthetic_n=\"ten\": celeba's synthetic_n must be a whole number >= 20" in one_line(err)

@pytest.mark.parametrize('args, says', [
    (['--epoch', '2'], ["unrecognized arguments: --epoch 2", "did you mean --epochs?"]),
    (['--epochs', '2.5'], ["argument --epochs: invalid int value: '2.5'"]),
    (['--betas', 'x'], ["argument --betas: invalid float value: 'x'"]),
    (['--betas', '1', '2', '3'], ["--betas gives 3 values for 2 paths"]),
    (['--latent-dims', '0', '3'], ["--latent-dims must be >= 1"]),
    (['--lr', '-1'], ["--lr must be a finite number > 0"]),
    (['--bs', '0'], ["--bs must be >= 1"]),
    (['--data', 'mnist'], ["invalid choice: 'mnist'"]),
    (['--data-path', '/nonexistent/dsprites.npz'], ["--data-path /nonexistent/dsprites.npz does not exist"]),
    (['--out', 'a_file.txt'], ["--out a_file.txt is a file, not a folder"]),
])
def test_train_rejects_bad_input(tmp_path, args, says, capsys, monkeypatch):
    out = tmp_path/'run'
    (tmp_path/'a_file.txt').write_text('not a folder')
    rc, stdout, err = call('mpvae-train', '--out', str(out), *args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert rc == 2, (stdout, err)
    line = one_line(err)
    assert line.startswith('mpvae-train: '), line
    for s in says: assert s in line, line
    assert not out.exists()


@pytest.mark.parametrize('args, says', [
    (['nosuchmodel'], ["no pretrained model named 'nosuchmodel'", "the shipped ones are", "'dsprites_baseline'"]),
    (['dsprites_baseline', '--seed', '7'], ["'dsprites_baseline' ships for seeds [0]", "not seed 7"]),
    (['dsprites_baseline', '--seed', 'one'], ["argument --seed: invalid int value: 'one'"]),
])
def test_pretrained_rejects_bad_input(tmp_path, args, says, capsys, monkeypatch):
    rc, stdout, err = call('mpvae-pretrained', *args, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    line = one_line(err)
    assert rc == 2 and stdout == '' and line.startswith('mpvae-pretrained: '), (rc, stdout, err)
    for s in says: assert s in line, (s, line)


@pytest.mark.parametrize('script, args, says', [
    ('mpvae-tables', ['--preset', 'smoke', '--out', 'results', '-p', 'train_images=3e6'], 'write 3000000'),
    ('mpvae-train', ['--out', 'run', '--lr', '-1'], '--lr must be a finite number > 0'),
    ('mpvae-pretrained', ['nosuchmodel'], "no pretrained model named 'nosuchmodel'"),
])
def test_console_scripts_reject_bad_input(tmp_path, script, args, says):
    "The tests above call each script's main function; the installed scripts themselves exit the same way: 2, one line."
    rc, stdout, err = run(script, *args, cwd=tmp_path)
    assert rc == 2 and one_line(err).startswith(f'{script}: ') and says in err, (rc, stdout, err)
    assert not any(tmp_path.iterdir()), 'something was written'


@pytest.mark.parametrize('cmd', [['mpvae-pretrained'], ['mpvae-pretrained', '--json']])   # (argparse's --help swallows it itself)
def test_a_reader_that_has_gone_gets_no_traceback(tmp_path, cmd):
    "`mpvae-pretrained | head` and the like: a reader that closed the pipe (here `| true`, gone before anything is printed)"
    " ends the command with status 1 and nothing on stderr, not a BrokenPipeError traceback."
    r = subprocess.run(['bash', '-c', f"{BIN/cmd[0]} {' '.join(cmd[1:])} 2>err.txt | true; echo ${{PIPESTATUS[0]}}"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300, env=ENV)
    assert r.stdout.strip() == '1', r.stdout
    assert (tmp_path/'err.txt').read_text() == '', (tmp_path/'err.txt').read_text()

def test_p_values_take_python_literals():
    "`-p figures=False`, the spelling the notebooks use, means false (it was rejected as a string), as JSON's `false` does."
    from mpvae.core import parse_value
    from mpvae.params import check_overrides, notebook_params, find_notebooks
    assert [parse_value(v) for v in ('False', 'false', 'None', 'null', '(3, 9)', '[3, 9]', 'logreg_cv')] == \
        [False, False, None, None, [3, 9], [3, 9], 'logreg_cv']
    spec = {'dsprites': notebook_params(find_notebooks()/'10_table_dsprites.ipynb')}
    assert check_overrides({'figures': parse_value('False'), 'mpvae_dims': parse_value('(3, 9)')}, spec)['dsprites'] == \
        {'figures': False, 'mpvae_dims': [3, 9]}


# Malformed -p values and paths, written by hand from what the table notebooks can run with (not generated from the
# declaration under test): each must be refused with exit 2, one line naming the parameter, and no output folder.
FUZZ = [
    ('bs=-5', 'bs'), ('bs=0', 'bs'), ('bs=1.5', 'bs'), ('bs=true', 'bs'), ('bs=null', 'bs'), ('bs="64"', 'bs'),
    ('bs=[64]', 'bs'), ('epochs=0', 'epochs'), ('epochs=-1', 'epochs'), ('train_images=0', 'train_images'),
    ('train_images=-1024', 'train_images'), ('train_images=1e9', 'train_images'), ('train_images=32', 'train_images'),
    ('lr=0', 'lr'), ('lr=-1e-3', 'lr'), ('lr=NaN', 'lr'), ('lr=Infinity', 'lr'), ('lr=[0.001]', 'lr'), ('lr=null', 'lr'),
    ('beta=-1', 'beta'), ('beta=-Infinity', 'beta'), ('beta=NaN', 'beta'), ('beta=four', 'beta'),
    ('mpvae_dims=[]', 'mpvae_dims'), ('mpvae_dims=[3,-9]', 'mpvae_dims'), ('mpvae_dims=[0,12]', 'mpvae_dims'),
    ('mpvae_dims=[3]', 'mpvae_dims'), ('mpvae_taps=[3]', 'mpvae_taps'), ('mpvae_taps=[5,4]', 'mpvae_taps'),
    ('mpvae_taps=[4,7]', 'mpvae_taps'), ('path_groups=every', 'path_groups'), ('metrics_seeds=[5]', 'metrics_seeds'), ('mpvae_dims=12', 'mpvae_dims'),
    ('mpvae_dims=[3.5,9]', 'mpvae_dims'), ('baseline_dims=[]', 'baseline_dims'), ('baseline_dims=[-12]', 'baseline_dims'),
    ('mpvae_betas=[4]', 'mpvae_betas'), ('mpvae_betas=[4,-1]', 'mpvae_betas'), ('mpvae_betas=[4,1,1]', 'mpvae_betas'),
    ('mpvae_betas=4', 'mpvae_betas'), ('rep_seeds=[]', 'rep_seeds'), ('rep_seeds=[0,0]', 'rep_seeds'),
    ('rep_seeds=[-1]', 'rep_seeds'), ('rep_seeds=0', 'rep_seeds'), ('probe_pool=0', 'probe_pool'),
    ('probe_pool=-5', 'probe_pool'), ('probe_pool=800000', 'probe_pool'), ('probe_train=0', 'probe_train'),
    ('probe_train=5', 'probe_train'), ('probe_train=2000', 'probe_train'), ('probe_valid=0', 'probe_valid'),
    ('probe_valid=1000', 'probe_train'), ('n_splits=0', 'n_splits'), ('n_probe_seeds=0', 'n_probe_seeds'),
    ('probe=svm', 'probe'), ('probe=LOGREG', 'probe'), ('probe_C=0', 'probe_C'), ('probe_C=-1', 'probe_C'),
    ('metrics=all', 'metrics'), ('metrics=true', 'metrics'), ('precision=fp8', 'precision'), ('precision=16', 'precision'),
    ('device=gpu', 'device'), ('device=cuda0', 'device'), ('figures=yes', 'figures'), ('figures=1', 'figures'),
    ('pretrained=1', 'pretrained'), ('data_path=/no/such/dsprites.npz', 'data_path'), ('data_path=3', 'data_path'),
]

def test_fuzz_tables_rejects_malformed_values(tmp_path, capsys, monkeypatch):
    "Over 60 malformed values: each refused in under 10 s, exit 2, one line naming the parameter, nothing written."
    import time
    assert len(FUZZ) >= 50
    (tmp_path/'a_file.txt').write_text('not a folder')
    cases = [(['-p', kv], name) for kv, name in FUZZ] + [
        (['-p', 'pretrained=true', '-p', 'pretrained_setting=lr1e-5'], 'pretrained_setting'),
        (['-p', 'pretrained=true', '-p', 'rep_seeds=[0,9]'], 'rep_seeds'),
        (['--out-dir', 'x'], '--out-dir'), (['--expect', 'no_such_results.json'], '--expect'),
        (['--expect', str(tmp_path/'a_file.txt')], '--expect'), (['--tol', '-1'], '--tol'), (['--tol', 'nan'], '--tol'), (['-p', '=3'], 'no such parameter'), (['-p', 'bs==3'], 'bs'),
    ]
    for i, (args, name) in enumerate(cases):
        out = tmp_path/f'r{i}'
        t = time.perf_counter()
        rc, _, err = call('mpvae-tables', '--preset', 'smoke', '--tables', 'dsprites', '--out', str(out), *args, cwd=tmp_path,
                          capsys=capsys, monkeypatch=monkeypatch)
        dt = time.perf_counter() - t
        assert rc == 2, (args, rc, err)
        assert dt < 10, (args, dt)
        line = one_line(err)
        assert line.startswith('mpvae-tables: ') and name in line, (args, line)
        assert not out.exists(), (args, 'an output folder was made')
    rc, _, err = call('mpvae-tables', '--out', str(tmp_path/'a_file.txt'), cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    assert rc == 2 and 'is a file, not a folder' in err


def test_tables_workflow_runs_real_presets_against_matching_reports():
    "tables.yml's mpvae-tables commands name real presets and tables, and each --expect file is a results.json of that preset."
    import json, shlex, yaml
    from mpvae.params import PRESETS, TABLE_NOTEBOOKS
    root = Path(__file__).resolve().parents[1]
    wf = yaml.safe_load((root/'.github/workflows/tables.yml').read_text())
    cmds = [shlex.split(s['run']) for s in wf['jobs']['tables']['steps'] if 'mpvae-tables' in s.get('run', '')]
    assert len(cmds) >= 2
    for c in cmds:
        opt = lambda o: c[c.index(o) + 1] if o in c else None
        assert opt('--preset') in PRESETS and opt('--out')
        tables = c[c.index('--tables') + 1:]
        tables = tables[:next((i for i, t in enumerate(tables) if t.startswith('-')), len(tables))]
        assert tables and set(tables) <= set(TABLE_NOTEBOOKS) and set(tables) <= set(PRESETS[opt('--preset')]), c
        if opt('--expect'):
            ref = json.loads((root/opt('--expect')).read_text())
            assert ref['preset'] == opt('--preset') and ref['table'] in tables, (c, ref['preset'])
    assert any('--expect' in c for c in cmds) and {'dsprites', 'celeba'} <= {t for c in cmds for t in c}


def test_train_never_replaces_an_earlier_run(tmp_path, capsys, monkeypatch):
    "An --epochs run into a folder holding a run: refused in one line naming --resume and --overwrite, nothing touched."
    out = tmp_path/'run'; out.mkdir()
    (out/'history.csv').write_text('epoch,train_loss\n0,1.0\n'); (out/'checkpoint.pth').write_bytes(b'weights')
    rc, stdout, err = call('mpvae-train', '--out', str(out), '--epochs', '1', cwd=tmp_path, capsys=capsys,
                           monkeypatch=monkeypatch)
    line = one_line(err)
    assert rc == 2 and 'holds an earlier run (history.csv, checkpoint.pth)' in line, line
    assert '--resume to continue it' in line and '--overwrite to replace it' in line
    assert (out/'history.csv').read_text() == 'epoch,train_loss\n0,1.0\n' and (out/'checkpoint.pth').read_bytes() == b'weights'

def test_train_class_folders_need_recursive_and_say_so(tmp_path, capsys, monkeypatch):
    "The message about sub-folders names the shell flag, and the run folder is not made."
    from PIL import Image
    for k, cls in enumerate(('cat', 'dog')):
        (tmp_path/'imgs'/cls).mkdir(parents=True)
        for i in range(3): Image.new('RGB', (40, 40), (60 * k + i, 0, 0)).save(tmp_path/'imgs'/cls/f'{i}.png')
    out = tmp_path/'run'
    rc, stdout, err = call('mpvae-train', '--data', 'folder', '--data-path', str(tmp_path/'imgs'), '--out', str(out),
                           cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    line = one_line(err)
    assert rc == 2 and 'pass --recursive to read them' in line and 'recursive=True' not in line, line
    assert not out.exists()

def test_train_refuses_too_few_images_before_training(tmp_path, capsys, monkeypatch):
    "3 images: no validation image and no batch of 64; one line naming --bs, exit 2, no run folder, well under 10 s."
    import time
    from PIL import Image
    (tmp_path/'imgs').mkdir()
    for i in range(3): Image.new('RGB', (64, 64), (30 * i, 0, 0)).save(tmp_path/'imgs'/f'{i}.png')
    out, t = tmp_path/'run', time.time()
    rc, stdout, err = call('mpvae-train', '--data', 'folder', '--data-path', str(tmp_path/'imgs'), '--out', str(out),
                           cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    line = one_line(err)
    assert rc == 2 and 'holds 3 images: a run needs a tenth of them' in line and 'a smaller --bs' in line, line
    assert not out.exists() and time.time() - t < 10


def _folder_mistake(root, kind):
    "A folder with one of the mistakes a new user makes (issue #47), and the extra arguments that meet it."
    from PIL import Image
    imgs = root/'imgs'; imgs.mkdir()
    if kind == 'class folders':
        for k, cls in enumerate(('cat', 'dog')):
            (imgs/cls).mkdir()
            for i in range(10): Image.new('RGB', (64, 64), (60 * k + i, 0, 0)).save(imgs/cls/f'{i}.png')
    elif kind in ('unreadable', 'too few', 'small'):
        n, side = {'unreadable': (20, 64), 'too few': (3, 64), 'small': (20, 30)}[kind]
        for i in range(n): Image.new('RGB', (side, side), (10 * i, 0, 0)).save(imgs/f'{i:02d}.png')
        if kind == 'unreadable':
            for i in (3, 7): (imgs/f'{i:02d}.png').write_bytes(b'not a png')
    return ['--data', 'folder', '--data-path', str(imgs)]

@pytest.mark.parametrize('kind, says', [
    ('class folders', ['pass --recursive to read them']),
    ('unreadable', ['2 of 20 images could not be read', '03.png', '07.png']),
    ('too few', ['holds 3 images', 'a smaller --bs']),
    ('small', ['--upscale']),
    ('earlier run', ['holds an earlier run (history.csv, checkpoint.pth)', '--resume', '--overwrite']),
])
def test_own_images_mistakes_from_the_shell(tmp_path, kind, says):
    "Each mistake of the own-images trial (#47), through the installed mpvae-train: exit 2, one line naming the fix in"
    " shell words, nothing written, and under 10 s of CPU (a fresh process, imports included: ~4 s on an idle 2-core"
    " machine; CPU time, not wall time, so that a busy machine does not fail it)."
    import resource
    out = tmp_path/'run'
    if kind == 'earlier run':
        out.mkdir(); (out/'history.csv').write_text('epoch\n0\n'); (out/'checkpoint.pth').write_bytes(b'weights')
        args = ['--epochs', '1']
    else: args = _folder_mistake(tmp_path, kind)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*'))
    cpu = lambda: (lambda r: r.ru_utime + r.ru_stime)(resource.getrusage(resource.RUSAGE_CHILDREN))
    t = cpu(); rc, stdout, err = run('mpvae-train', *args, '--out', str(out), cwd=tmp_path); secs = cpu() - t
    line = one_line(err)
    assert rc == 2 and line.startswith('mpvae-train: '), (rc, err)
    for s in says: assert s in line, line
    assert 'recursive=True' not in line and 'upscale=True' not in line, line     # Python words, not the shell's
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob('*')) == before, 'something was written'
    assert secs < 10, f"{secs:.1f} CPU seconds to refuse"
