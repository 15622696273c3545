"""Re-execute the notebooks in place (`make notebooks`), so that the outputs kept in git are those of the library committed.

Each notebook runs in a fresh kernel in `nbs/` (as `nbdev-test` runs it; the table notebooks write into a temporary
`out_dir`), from a copy of itself with one hidden first cell that seeds Python, NumPy and torch and fixes the figure format (PNG at
72 dpi). A table notebook gets the parameters of its `NOTEBOOK_PRESETS` preset as papermill passes them, in a cell
tagged `injected-parameters` after its `parameters` cell, which stays in the notebook so that a reader sees what the
outputs came from (papermill replaces it on its own runs); only the temporary `out_dir` and this machine's CelebA folder
go in a hidden cell. Cells flagged `#| slow` or `#| notest` are skipped, as nbdev-test skips them (they time the machine or run
for long), and keep no output. fastai's fit tables lose their `time` column and warnings (stderr) are dropped: both
depend on the machine. Otherwise only the outputs come back into the notebook: its cells and their sources are left as they are. Training runs
in float32 (`MPVAE_PRECISION=fp32`), so the numbers do not depend on which precision a machine would find fastest.

After the run, `nbs/outputs.json` records for each notebook a fingerprint of the library it ran against: the syntax
tree (not the formatting) of every module the notebook imports, directly or through other modules, and the shipped
pretrained weights when it uses them. `tests/test_outputs.py` recomputes the fingerprints and fails on a notebook
whose outputs are older than the library.

    python tools/run_notebooks.py                 # every notebook but index.ipynb
    python tools/run_notebooks.py --stale         # only notebooks whose fingerprint changed
    python tools/run_notebooks.py nbs/03_model.ipynb
    python tools/run_notebooks.py --check         # exit 1 and name the stale notebooks (what the test does)
"""
import argparse, ast, functools, hashlib, json, os, re, shutil, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NBS, LIB = ROOT/'nbs', ROOT/'mpvae'
RECORD = NBS/'outputs.json'
# index.ipynb's code cell is the README's quick look; it is executed by the notebook tests and kept as written
SKIP = {'index.ipynb'}
TST_FLAGS = ('slow', 'notest')   # pyproject's tool.nbdev.tst_flags: cells nbdev-test skips (timings, long runs)
_PRELUDE = """\
import random as _r, numpy as _np, torch as _t
_r.seed(0); _np.random.seed(0); _t.manual_seed(0)
import matplotlib as _mpl
_mpl.rcParams.update({'figure.dpi': 72, 'savefig.dpi': 72})
try: get_ipython().run_line_magic('config', "InlineBackend.figure_formats = ['png']")
except Exception: pass
del _r, _np, _t, _mpl"""

def _module_tree(path:Path) -> str:
    "A module's syntax tree without line numbers: the same for any formatting of the same code."
    return _tree_of(path.read_text())

@functools.lru_cache(maxsize=None)
def _tree_of(src:str) -> str:
    "The tree dump of one module's source, parsed once per process (a check reads every module once per notebook)."
    return ast.dump(ast.parse(src), include_attributes=False)

def _imports(tree:ast.AST, pkg:str='mpvae') -> set:
    "Modules of `pkg` that the code in `tree` imports (`from .x import`, `from mpvae.x import`, `import mpvae.x`)."
    mods = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom):
            m = n.module or ''
            if n.level: mods.add(m.split('.')[0] if m else '*')
            elif m == pkg or m.startswith(pkg + '.'):
                sub = m[len(pkg)+1:].split('.')[0]
                mods.add(sub or '*')
                if not sub: mods |= {a.name for a in n.names}
        elif isinstance(n, ast.Import):
            for a in n.names:
                if a.name == pkg or a.name.startswith(pkg + '.'): mods.add(a.name[len(pkg)+1:].split('.')[0] or '*')
    return mods

def library_modules() -> dict:
    "Each module of the library (but the generated index `_modidx`) -> the library modules it imports."
    mods = {p.stem: p for p in LIB.glob('*.py') if p.stem != '_modidx'}
    return {m: {i for i in _module_imports(p.read_text()) if i in mods or i == '*'} for m, p in mods.items()}

@functools.lru_cache(maxsize=None)
def _module_imports(src:str) -> frozenset:
    "The package modules one module's source imports, parsed once per process."
    return frozenset(_imports(ast.parse(src)))

def _code(nb:dict) -> str:
    "The notebook's code cells as one Python source (magics and shell lines dropped)."
    keep = lambda l: not l.lstrip().startswith(('%', '!'))
    return '\n'.join('\n'.join(l for l in ''.join(c['source']).splitlines() if keep(l))
                     for c in nb['cells'] if c['cell_type'] == 'code')

def notebook_deps(nb:dict) -> list:
    "The library modules a notebook's outputs depend on: its own module and what it imports, transitively."
    graph = library_modules()
    code = _code(nb)
    try: direct = _imports(ast.parse(code))
    except SyntaxError: direct = {'*'}
    m = re.search(r'^#\|\s*default_exp\s+(\S+)', code, re.M)
    if m: direct.add(m.group(1).split('.')[0])
    if '*' in direct: direct = set(graph)
    todo, seen = list(direct), set()
    while todo:
        d = todo.pop()
        if d in seen or d not in graph: continue
        seen.add(d)
        todo += list(set(graph) if '*' in graph[d] else graph[d])
    return sorted(seen)

def fingerprint(nb_path:Path) -> dict:
    "What a notebook's outputs were made from: a hash of each library module it depends on, and of the shipped weights."
    nb = json.loads(Path(nb_path).read_text())
    deps = notebook_deps(nb)
    h = {m: hashlib.sha256(_module_tree(LIB/f'{m}.py').encode()).hexdigest()[:16] for m in deps}
    if 'pretrained' in deps:
        for p in sorted((LIB/'pretrained').glob('*/*')):     # each shipped model's folder: weights, config, record
            if p.name != 'README.md': h[f'pretrained/{p.parent.name}/{p.name}'] = hashlib.sha256(p.read_bytes()).hexdigest()[:16]
    return h

def notebooks() -> list: return sorted(p for p in NBS.glob('*.ipynb') if p.name not in SKIP and not p.name.startswith(('_', '.')))

def has_outputs(nb_path:Path) -> bool:
    "Does any code cell of the notebook keep an output?"
    return any(c.get('outputs') for c in json.loads(Path(nb_path).read_text())['cells'] if c['cell_type'] == 'code')

def stale(record:dict|None=None) -> dict:
    "Notebook name -> the library modules that changed since its outputs were made."
    record = record if record is not None else (json.loads(RECORD.read_text()) if RECORD.exists() else {})
    out = {}
    for p in notebooks():
        have = record.get(p.name)
        if have is None:   # a notebook without a record counts only if it keeps outputs (made some other way)
            if has_outputs(p): out[p.name] = 'keeps outputs, but make notebooks never ran it'
            continue
        want = fingerprint(p)
        if have != want:
            diff = sorted(k for k in set(have) | set(want) if have.get(k) != want.get(k))
            w = [k for k in diff if k.startswith('pretrained/')]   # one entry for the weights, not one per file
            out[p.name] = ', '.join([k for k in diff if not k.startswith('pretrained/')] +
                                    ([f'the shipped models ({len(w)} files)'] if w else []))
    return out

def drop_time_column(text:str) -> str:
    "fastai's fit table without its last column, `time` (an epoch's duration depends on the machine)."
    if '<th>time</th>' not in text: return text
    text = re.sub(r'\s*<th>time</th>', '', text)
    return re.sub(r'\s*<td>[^<]*</td>(\s*</tr>)', r'\1', text)

CLOCK = re.compile(r'^\d\d:\d\d:\d\d ', re.M)   # the wall-clock prefix of mpvae's log lines

def _keep(o) -> dict|None:
    "An output as kept in git: fit tables without their time column, log lines without their clock; None for stderr."
    if o.get('output_type') == 'stream' and o.get('name') == 'stderr': return None   # warnings name local files
    if o.get('output_type') == 'stream':
        o['text'] = CLOCK.sub('', o['text'] if isinstance(o['text'], str) else ''.join(o['text']))
    for k in ('text/html', 'text/markdown', 'text/plain'):
        v = o.get('data', {}).get(k)
        if v is not None: o['data'][k] = drop_time_column(v if isinstance(v, str) else ''.join(v))
    return o

def _skipped(src:str) -> bool:
    "Is this cell flagged with one of nbdev's `tst_flags` (`#| slow`, `#| notest`)? Those cells are not run."
    return bool(re.search(r'^#\|\s*(' + '|'.join(TST_FLAGS) + r')\b', src, re.M))

def execute(nb_path:Path, timeout:int=1800) -> float:
    "Execute one notebook (a copy, in a temporary folder); write its outputs into it; return the seconds it took."
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.read(nb_path, as_version=4)
    mark = lambda src: nbformat.v4.new_code_cell(src, metadata={'injected': True})
    t = time.time()
    d = tempfile.mkdtemp(prefix='mpvae_nb_')
    # a table notebook: the parameters of its preset in mpvae.params.NOTEBOOK_PRESETS, as `mpvae-tables --preset` passes them
    from mpvae.params import TABLE_NOTEBOOKS, notebook_run_params
    table = {f: t for t, f in TABLE_NOTEBOOKS.items()}.get(nb_path.name)
    hidden = None
    if table:   # kept in the notebook, as papermill shows them: a cell tagged injected-parameters after the parameters
        params = notebook_run_params(table)
        hidden = dict(out_dir=d, **({'data_root': params.pop('data_root')} if 'data_root' in params else {}))
        shown = '# Parameters\n' + '\n'.join(f'{k} = {v!r}' for k, v in params.items())
        if 'data_root' in hidden: shown += "\n# data_root: this machine's CelebA folder ($MPVAE_CELEBA; -p data_root=DIR)"
        tags = lambda c: c.get('metadata', {}).get('tags', [])
        nb.cells = [c for c in nb.cells if 'injected-parameters' not in tags(c)]   # an earlier run's
        i = next(i for i, c in enumerate(nb.cells) if 'parameters' in tags(c))
        nb.cells.insert(i + 1, nbformat.v4.new_code_cell(shown, metadata={'tags': ['injected-parameters']}))
    cells = [mark(_PRELUDE)]
    for c in nb.cells:
        c2 = nbformat.from_dict(json.loads(json.dumps(c)))
        if c.cell_type == 'code' and _skipped(c.source): c2.source = ''   # as nbdev-test: not run, no output
        cells.append(c2)
        if hidden and 'injected-parameters' in c.get('metadata', {}).get('tags', []):   # where this machine keeps things
            cells.append(mark('\n'.join(f'{k} = {v!r}' for k, v in hidden.items())))
    run = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
    env = dict(os.environ, MPVAE_PRECISION='fp32', PYTHONHASHSEED='0', MPLBACKEND='module://matplotlib_inline.backend_inline')
    for k in ('MPVAE_PROGRESS_FILE', 'MPVAE_PROGRESS_JOB'): env.pop(k, None)
    try: NotebookClient(run, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(NBS)}}).execute(env=env)
    finally: shutil.rmtree(d, ignore_errors=True)
    ran = [c for c in run.cells if not c.metadata.get('injected')]
    assert len(ran) == len(nb.cells)
    for c, r in zip(nb.cells, ran):
        if c.cell_type != 'code': continue
        c.outputs = [o for o in map(_keep, r.outputs) if o is not None]
        c.execution_count = None
    nbformat.write(nb, nb_path)
    return time.time() - t

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('notebooks', nargs='*', help="notebooks to run (default: all but index.ipynb)")
    ap.add_argument('--stale', action='store_true', help="run only notebooks whose library fingerprint changed")
    ap.add_argument('--check', action='store_true', help="run nothing: exit 1 if any notebook's outputs are stale")
    ap.add_argument('--timeout', type=int, default=1800, help="seconds one cell may run (default 1800)")
    a = ap.parse_args(argv)
    if a.check:
        s = stale()
        for k, v in s.items(): print(f"{k}: outputs older than the library ({v})")
        return 1 if s else 0
    nbs = [Path(p).resolve() for p in a.notebooks] or notebooks()
    if a.stale: nbs = [p for p in nbs if p.name in stale() or not has_outputs(p)]
    t0, failed = time.time(), []
    for p in nbs:
        print(f"running {p.name} ...", flush=True)
        try: secs = execute(p, timeout=a.timeout)
        except Exception as e:   # the notebook keeps its old outputs and record; go on with the others
            print(f"  {p.name} FAILED: {type(e).__name__}: {str(e)[-2000:]}", flush=True); failed.append(p.name); continue
        record = json.loads(RECORD.read_text()) if RECORD.exists() else {}   # another run may have added to it
        record[p.name] = fingerprint(p)
        RECORD.write_text(json.dumps(dict(sorted(record.items())), indent=1) + '\n')
        print(f"  {p.name}: {secs:.0f} s", flush=True)
    print(f"{len(nbs) - len(failed)} notebooks in {(time.time() - t0)/60:.1f} min; fingerprints in {RECORD.relative_to(ROOT)}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ''))
    return 1 if failed else 0

if __name__ == '__main__': sys.exit(main())
