"""The outputs kept in the notebooks are current: each notebook was last executed (`make notebooks`) against the library
as committed. `nbs/outputs.json` records, per notebook, a fingerprint of the library modules its outputs depend on
(their syntax trees, so reformatting does not count; plus the shipped weights where it uses them); this test
recomputes the fingerprints without executing anything. Also: no kept output shows a machine's speed."""
import importlib.util, json, re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('run_notebooks', ROOT / 'tools' / 'run_notebooks.py')
run_notebooks = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(run_notebooks)

def test_outputs_match_the_library():
    stale = run_notebooks.stale()
    assert not stale, ("notebook outputs older than the library (run `make notebooks`, or "
                       "`make notebooks NBS=--stale` for these only, and commit the notebooks and nbs/outputs.json):\n"
                       + '\n'.join(f"  {nb}: {why}" for nb, why in stale.items()))

def test_fingerprint_ignores_formatting_but_not_code(tmp_path, monkeypatch):
    lib = tmp_path / 'mpvae'; lib.mkdir()
    (lib / 'a.py').write_text('def f(x):\n    return x + 1\n')
    (lib / 'b.py').write_text('from .a import f\n')
    monkeypatch.setattr(run_notebooks, 'LIB', lib)
    nb = tmp_path / 'n.ipynb'
    nb.write_text(json.dumps({'cells': [{'cell_type': 'code', 'source': 'from mpvae.b import f\nf(1)'}]}))
    fp = run_notebooks.fingerprint(nb)
    assert set(fp) == {'a', 'b'}                                   # b imports a: both matter
    (lib / 'a.py').write_text('def f(x):\n    # a comment\n    return (x +\n            1)\n')
    assert run_notebooks.fingerprint(nb) == fp                     # the same code, wrapped
    (lib / 'a.py').write_text('def f(x):\n    return x + 2\n')
    assert run_notebooks.fingerprint(nb)['a'] != fp['a']

_SPEED = re.compile(r'\d\s*(img/s|images/s|it/s)\b|\b\d+(\.\d+)?\s?(ms|s|sec|seconds|min|minutes)\b', re.I)

# temporary folders (a new name every run) and home folders: outputs that would change with every run or machine
_LOCAL = re.compile(r'/tmp/|/root/|/home/|/Users/|[A-Z]:\\Users')

@pytest.mark.parametrize('nb', run_notebooks.notebooks(), ids=lambda p: p.name)
def test_outputs_hold_nothing_of_this_machine(nb):
    "Speeds and durations belong in BENCHMARKS.md; temporary and home folders would change the outputs at every run."
    for i, c in enumerate(json.loads(nb.read_text())['cells']):
        for o in c.get('outputs', []):
            text = ''.join(o.get('text', '')) + ''.join(o.get('data', {}).get('text/plain', ''))
            text += ''.join(o.get('data', {}).get('text/html', '')) + ''.join(o.get('data', {}).get('text/markdown', ''))
            m = _SPEED.search(re.sub(r'<[^>]+>', ' ', text))
            assert not m, f"{nb.name}, cell {i}: output shows {m.group(0)!r}: {text[max(0, m.start()-80):m.end()+40]!r}"
            assert '<th>time</th>' not in text, f"{nb.name}, cell {i}: a fit table with its time column"
            m = run_notebooks.CLOCK.search(text)
            assert not m, f"{nb.name}, cell {i}: a log line with the time of day: {text[m.start():m.end()+60]!r}"
            m = _LOCAL.search(text)
            assert not m, f"{nb.name}, cell {i}: output shows a path of this machine: {text[max(0, m.start()-80):m.end()+40]!r}"

def test_table_notebook_shows_the_committed_report():
    """10_table_dsprites keeps the README's Table 2, the `pretrained_lr1e-4` preset's: the numbers of
    reports/dsprites_pretrained_lr1e-4.json, within 0.2 per label (the report ran on an Intel Xeon: the probes'
    floating-point sums move a label's accuracy by up to ~0.1 between CPUs, the means by 0.02)."""
    ref = json.loads((ROOT/'reports'/'dsprites_pretrained_lr1e-4.json').read_text())['rows']
    names = {'beta-VAE (z=12)': 'baseline', 'beta-MPVAE (z1=3)': 'z1', 'beta-MPVAE (z2=9)': 'z2', 'beta-MPVAE (z1+z2)': 'z1+z2'}
    md = [''.join(o['data']['text/markdown']) for c in json.loads((ROOT/'nbs'/'10_table_dsprites.ipynb').read_text())['cells']
          for o in c.get('outputs', []) if '| beta-VAE (z=12) |' in ''.join(o.get('data', {}).get('text/markdown', ''))]
    assert len(md) == 1, "10_table_dsprites.ipynb keeps no Table 2 (run `make notebooks NBS=nbs/10_table_dsprites.ipynb`)"
    seen = set()
    for line in md[0].split('\n\n')[0].splitlines():       # Table 2 itself (the distance and C tables follow it)
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if cells[0] not in names: continue
        key = names[cells[0]]; seen.add(key)
        ours = [float(c.split('±')[0]) for c in cells[1::2]]    # (ours) and (paper) columns alternate
        want = [ref[key]['acc'][l]['mean'] for l in ('shape', 'scale', 'orientation', 'posX', 'posY')] + [ref[key]['mean']['mean']]
        assert ours == pytest.approx(want, abs=0.2), (key, ours, want)
    assert seen == set(names.values())
