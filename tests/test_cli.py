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

def one_line(err):
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]

@pytest.mark.parametrize('args, says', [
    (['-p', 'nosuchparam=3'], ["nosuchparam: no such parameter in dsprites", "train_images=1_024", "rep_seeds=[0]", "data_path=None"]),
    (['-p', 'train_image=3000000'], ["did you mean train_images?"]),
    (['-p', 'train_images=3e6'], ["train_images", "expects a whole number", "write 3000000"]),
    (['-p', 'rep_seeds=3'], ["rep_seeds", "expects a list of whole numbers, got 3"]),
    (['-p', 'mpvae_dims=[3, 9.5]'], ["mpvae_dims", "expects a list of whole numbers"]),
    (['-p', 'lr=fast'], ["lr", "expects a number"]),
    (['-p', 'figures=1'], ["figures", "expects true or false"]),
    (['-p', 'precision=16'], ["precision", "expects a string"]),
    (['-p', 'data_root="/x"'], ["data_root: no such parameter in dsprites"]),      # CelebA's, not dSprites'
    (['-p', 'out_dir="x"'], ["use --out"]),
    (['-p', 'bs'], ["-p expects NAME=VALUE"]),
    (['--epoch', '3'], ["unrecognized arguments: --epoch 3"]),
    (['--preset', 'huge'], ["invalid choice: 'huge'"]),
    (['--workers', '0'], ["workers must be a whole number >= 1"]),
])
def test_tables_rejects_bad_input(tmp_path, args, says):
    out = tmp_path/'results'
    rc, stdout, err = run('mpvae-tables', '--preset', 'smoke', '--tables', 'dsprites', '--out', str(out), *args, cwd=tmp_path)
    assert rc == 2, (stdout, err)
    line = one_line(err)
    assert line.startswith('mpvae-tables: '), line
    for s in says: assert s in line, line
    assert not out.exists(), "something was written before the input was checked"
    assert '[mpvae-tables] running' not in stdout

def test_tables_parameter_of_one_table_goes_to_that_table(tmp_path):
    "With two tables, a parameter only CelebA has is accepted; a wrong type is still caught for the table that has it."
    rc, _, err = run('mpvae-tables', '--tables', 'dsprites', 'celeba', '--out', str(tmp_path/'r'), '-p', 'synthetic_n=ten', cwd=tmp_path)
    assert rc == 2 and "celeba's synthetic_n (default 160) expects a whole number" in one_line(err)

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
])
def test_train_rejects_bad_input(tmp_path, args, says):
    out = tmp_path/'run'
    rc, stdout, err = run('mpvae-train', '--out', str(out), *args, cwd=tmp_path)
    assert rc == 2, (stdout, err)
    line = one_line(err)
    assert line.startswith('mpvae-train: '), line
    for s in says: assert s in line, line
    assert not out.exists()


@pytest.mark.parametrize('args, says', [
    (['nosuchmodel'], ["no pretrained model named 'nosuchmodel'", "the shipped ones are", "'dsprites_vae'"]),
    (['dsprites_vae', '--seed', '7'], ["'dsprites_vae' ships for seeds [0]", "not seed 7"]),
    (['dsprites_vae', '--seed', 'one'], ["argument --seed: invalid int value: 'one'"]),
])
def test_pretrained_rejects_bad_input(tmp_path, args, says):
    rc, stdout, err = run('mpvae-pretrained', *args, cwd=tmp_path)
    line = one_line(err)
    assert rc == 2 and stdout == '' and line.startswith('mpvae-pretrained: '), (rc, stdout, err)
    for s in says: assert s in line, (s, line)


def test_p_values_take_python_literals():
    "`-p figures=False`, the spelling the notebooks use, means false (it was rejected as a string), as JSON's `false` does."
    from mpvae.tables import _parse_value, check_overrides, notebook_params, find_notebooks
    assert [_parse_value(v) for v in ('False', 'false', 'None', 'null', '(3, 9)', '[3, 9]', 'logreg_cv')] == \
        [False, False, None, None, [3, 9], [3, 9], 'logreg_cv']
    spec = {'dsprites': notebook_params(find_notebooks()/'10_table_dsprites.ipynb')}
    assert check_overrides({'figures': _parse_value('False'), 'mpvae_dims': _parse_value('(3, 9)')}, spec)['dsprites'] == \
        {'figures': False, 'mpvae_dims': [3, 9]}
