"""Quiet imports: `import mpvae.<module>` in a fresh interpreter, and the console scripts' `--help`, write nothing to
stderr (a dependency's FutureWarning on every import is noise the user can do nothing about). Python's default warning
filters apply, as for a user: FutureWarning and UserWarning are shown, DeprecationWarning only for `__main__`."""
import os, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULES = sorted(p.stem for p in (ROOT/'mpvae').glob('*.py') if p.stem not in ('__init__', '_modidx'))
ENV = {k: v for k, v in os.environ.items() if k not in ('PYTHONWARNINGS',)}

def test_modules_found():
    assert {'core', 'loader', 'model', 'train', 'stats', 'params', 'reports', 'runner', 'stages', 'cli', 'distributed'} <= set(MODULES)

def _imports(p:Path) -> set:
    "The mpvae modules that module file `p` imports, anywhere: at its top, inside a function, or under `if __name__ == '__main__'`."
    import ast
    tree = ast.parse(p.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or '').startswith('mpvae')):
            mod = (node.module or '').removeprefix('mpvae').lstrip('.')
            out |= {mod.split('.')[0]} if mod else {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split('.')[1] for a in node.names if a.name.startswith('mpvae.')}
    return out & set(MODULES)

def test_no_import_circle():
    """The modules import each other in one direction only: no module reaches itself through its imports, not even through a
    `__main__` block."""
    graph = {m: _imports(ROOT/'mpvae'/f'{m}.py') - {m} for m in MODULES}
    def reach(m, seen):
        for n in graph[m]:
            if n not in seen: seen.add(n); reach(n, seen)
        return seen
    circles = sorted(m for m in MODULES if m in reach(m, set()))
    assert not circles, {m: sorted(graph[m]) for m in circles}

@pytest.mark.parametrize('mod', ['mpvae.probe', 'mpvae.disentangle', 'mpvae.stats', 'mpvae.core'])
def test_probes_and_metrics_import_no_fastai(mod):
    r = subprocess.run([sys.executable, '-c', f'import sys, {mod}; print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"fastai"}}))'],
                       capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert r.stdout.strip() == '[]', r.stdout + r.stderr

@pytest.mark.parametrize('mod', ['mpvae'] + [f'mpvae.{m}' for m in MODULES])
def test_import_writes_nothing_to_stderr(mod):
    r = subprocess.run([sys.executable, '-c', f'import {mod}'], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == '', f"import {mod} wrote to stderr:\n{r.stderr}"
    assert r.stdout == ''

@pytest.mark.parametrize('script', ['mpvae', 'mpvae-tables', 'mpvae-train', 'mpvae-pretrained', 'mpvae-curves', 'mpvae-scarce',
                                    'mpvae-report'])
def test_console_script_help_is_quiet(script):
    r = subprocess.run([str(Path(sys.executable).parent/script), '--help'], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0 and r.stdout.startswith(f'usage: {script}'), r.stdout + r.stderr
    assert r.stderr == ''

def test_the_filter_is_narrow():
    "Only the one known FutureWarning is hidden: a warning raised after the import still shows."
    code = "import mpvae.core, warnings; warnings.warn('still shown', FutureWarning)"
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=ENV, timeout=300)
    assert 'FutureWarning: still shown' in r.stderr and 'jit' not in r.stderr


def test_no_private_name_crosses_modules():
    "A module imports only another module's public names: a private helper another module needs is made public (and documented)."
    import ast
    bad = []
    for p in sorted((ROOT/'mpvae').glob('*.py')):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or '').startswith('mpvae')):
                bad += [f"{p.name}: from {'.' * node.level}{node.module or ''} import {a.name}" for a in node.names
                        if a.name.startswith('_') and a.name != '__version__']
    assert not bad, bad
