"""MkDocs hook (mkdocs.yml `hooks:`): the glue MkDocs, Material and mkdocs-jupyter lack for an nbdev project.

`make docs` runs `mkdocs build`; the deploy workflow runs `make docs`. mkdocs-jupyter renders each notebook of `nbs/`
with the outputs it stores (nothing is executed). Before it does, this hook gives it the notebook as nbdev's site shows it:

- `#| hide`, `#| include: false` and `default_exp` cells dropped, `#| echo: false` / `#| output: false` honoured, the
  `#|` lines removed;
- an `#| export` cell replaced by the documentation of each public function, class (with its public methods) or
  `@patch`ed method it defines, and a `show_doc(X)` cell by X's: fastcore's `DocmentText` signature (docments as
  comments, as nbdev's `show_doc` prints it) and the docstring, under nbdev's anchor (`mpvae/_modidx.py`'s);
- backticked names of the package linked to those entries by nbdev's own `NbdevLookup`, and backticked
  `reports/*.md` linked to the file in the repository.

Pages keep nbdev's names (`nbs/03_model.ipynb` -> `model.html`) so that `_modidx.py`'s links and the old site's
addresses hold. After rendering, headings get pandoc's ids (Quarto's) and the on-this-page list is built from them;
`api.md`, an index of every public symbol, is generated.
"""
from __future__ import annotations
import ast, importlib, inspect, json, re, warnings
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
LIB = 'mpvae'
REPO = 'https://github.com/mpvae/mpvae'
BLOB = f'{REPO}/blob/main/'
PROC = ROOT / '_proc' / 'docs'          # the notebooks as the site shows them (git-ignored)

def page_name(nb: str) -> str:
    "nbdev's page for a notebook: `03_model.ipynb` -> `model.html`, `00a_loader.ipynb` -> `loader.html`."
    return re.sub(r'^\d+[a-z]?_', '', Path(nb).stem) + '.html'

def anchor(qualname: str) -> str:
    "nbdev's anchor for a documented name (`MPVAEConfig.n_paths` -> `mpvaeconfig.n_paths`)."
    return qualname.lower()

# ---------------------------------------------------------------- the documentation of one symbol

def _docment_text():
    from fastcore.docments import DocmentText
    class ShortDefaults(DocmentText):
        "nbdev's signature text; a default longer than 100 characters is cut at a word boundary, with an ellipsis."
        def _fmt_param(self, nm, p):
            s = super()._fmt_param(nm, p)
            head, eq, default = s.partition('=')
            if eq and len(default) > 100:
                cut = default[:80]
                cut = cut[:max(cut.rfind(' '), cut.rfind(','))].rstrip(', ') or cut
                s = f'{head}={cut}…'
            return s
    return ShortDefaults

def _kind(raw) -> str:
    if isinstance(raw, property): return 'property'
    if isinstance(raw, classmethod) or type(raw).__name__ == '_clsmethod': return 'classmethod'
    if isinstance(raw, staticmethod): return 'staticmethod'
    return ''

def _source_url(obj) -> str | None:
    f = obj.fget if isinstance(obj, property) else getattr(obj, '__func__', obj)
    try:
        f = inspect.unwrap(f)                 # a decorated function: the one written in the library, not the wrapper
        path = Path(inspect.getsourcefile(f)).resolve().relative_to(ROOT / LIB)
        path = Path(LIB) / path
        return f'{BLOB}{path.as_posix()}#L{inspect.getsourcelines(f)[1]}'
    except (TypeError, OSError, ValueError): return None

def doc_md(obj, raw, name: str, level: int = 3, link=None) -> str:
    """Markdown documenting `obj` (the attribute as `getattr` gives it) under `name`: a heading with nbdev's anchor,
    the signature (docments as comments) and the docstring. `raw` is the attribute as the class stores it."""
    from fastcore.docments import MarkdownRenderer
    kind = _kind(raw)
    is_cls = inspect.isclass(obj)
    short = name.split('.')[-1]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        r = MarkdownRenderer(obj, name=name)
        try: sig = str(_docment_text()(r.sym, maxline=100, docstring=False))
        except Exception: sig = f'def {short}{r.sig or "(...)"}:'
    if not callable(r.sym):        # a constant
        sig = f'{short} = {sig.split(": ", 1)[-1]}'
    elif is_cls:
        sig = re.sub(r'^def ', 'class ', sig)
        sig = re.sub(r'\)\s*->\s*None:', '):', sig)
    if kind == 'property': sig = '@property\n' + sig
    elif kind in ('classmethod', 'staticmethod'): sig = f'@{kind}\n' + sig
    src = _source_url(raw if kind == 'property' else obj)
    src_html = f' <a class="doc-source" href="{src}" title="source">source</a>' if src else ''
    out = [f'<h{level} id="{anchor(name)}" class="doc-heading"><code>{name}</code>{src_html}</h{level}>', '',
           f'```python\n{sig}\n```', '']
    if r.docs: out.append(link(r.docs) if link else r.docs)
    return '\n'.join(out) + '\n'

# ---------------------------------------------------------------- which symbols a cell documents

def _directives(src: str) -> dict:
    d = {}
    for l in src.splitlines():
        m = re.match(r'^#\|\s*([\w-]+)\s*:?\s*(.*)$', l)
        if m: d[m.group(1)] = m.group(2).strip()
    return d

def cell_symbols(src: str) -> list[str]:
    "Public names an exported cell defines: top-level functions and classes, and `@patch`ed methods as `Class.name`."
    code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|'))
    try: tree = ast.parse(code)
    except SyntaxError: return []
    names = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) or node.name.startswith('_'): continue
        decos = [ast.unparse(d).split('(')[0] for d in node.decorator_list]
        if isinstance(node, ast.ClassDef) or not {'patch', 'patch_to'} & set(decos): names.append(node.name); continue
        cls = None
        if node.args.args and node.args.args[0].annotation is not None: cls = ast.unparse(node.args.args[0].annotation)
        for d in node.decorator_list:
            if isinstance(d, ast.Call) and d.args and ast.unparse(d.func) == 'patch_to': cls = ast.unparse(d.args[0])
        if cls and '|' not in cls: names.append(f'{cls.strip(chr(34) + chr(39))}.{node.name}')
    return names

def public_methods(cls, patched=()) -> list[str]:
    "Public methods and properties a class body defines (not inherited ones, not those `@patch`ed in: `patched`)."
    out = []
    for k, v in vars(cls).items():
        if k.startswith('_') or f'{cls.__name__}.{k}' in patched: continue
        if getattr(getattr(v, '__func__', v), '__module__', cls.__module__) != cls.__module__: continue
        f = v.fget if isinstance(v, property) else getattr(v, '__func__', getattr(v, 'f', v))
        if inspect.isfunction(f) and f.__qualname__.startswith(cls.__qualname__ + '.'): out.append(k)
    return out

def resolve(name: str, ns: dict):
    "`(getattr value, raw value)` of a dotted name such as `MPVAE.from_pretrained`."
    head, *rest = name.split('.')
    obj = raw = ns[head]
    for r in rest: obj, raw = getattr(obj, r), inspect.getattr_static(obj, r)
    return obj, raw

# ---------------------------------------------------------------- linking backticked names

_LOOKUP = None
def lookup():
    global _LOOKUP
    if _LOOKUP is None:
        from nbdev.doclinks import NbdevLookup
        _LOOKUP = NbdevLookup(incl_libs=LIB)
    return _LOOKUP

def _doc_base() -> str:
    from mpvae._modidx import d
    return d['settings']['doc_host'] + d['settings']['doc_baseurl'] + '/'

_REPORT = re.compile(r'(?<![\[\w/])`((?:\.\./)?reports/[\w.-]+\.md)`(?![\]\w])')

def _report_link(m) -> str:
    "A report the repository holds -> its page on GitHub; a name of none stays plain code."
    path = m.group(1).removeprefix('../')
    return f'[`{m.group(1)}`]({BLOB}{path})' if (ROOT / path).is_file() else m.group(0)

def link_md(md: str) -> str:
    "Backticked names of the package -> links to their entries (nbdev's lookup, made relative); `reports/*.md` -> GitHub."
    md = lookup().linkify(md).replace(_doc_base(), '')
    lines, fence = md.splitlines(), False
    for i, l in enumerate(lines):
        if l.startswith('```'): fence = not fence
        elif not fence and not l.startswith('    '):
            lines[i] = _REPORT.sub(_report_link, l)
    return '\n'.join(lines)

_LINK = re.compile(r'\[`([^`]+)`\]\(([\w-]+\.html)#([^)\s]+)\)')

def prune_links(md: str, anchors: dict) -> str:
    """nbdev's lookup also knows private names and methods no page documents: such a link goes to the entry of the
    class that owns the name, or, where there is none, the name stays plain code."""
    def sub(m):
        name, page, frag = m.groups()
        have = anchors.get(page, set())
        while frag and frag not in have: frag = frag.rpartition('.')[0]
        return f'[`{name}`]({page}#{frag})' if frag else f'`{name}`'
    return _LINK.sub(sub, md)

# ---------------------------------------------------------------- one notebook -> the notebook the site shows

_SHOW_DOC = re.compile(r'^\s*show_doc\(\s*([\w.]+)\s*(?:,[^)]*)?\)\s*$')

def _strip(src: str) -> str: return '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()

def _namespace(module) -> dict:
    ns = {}
    for m in lib_modules(): ns.update({k: getattr(m, k) for k in getattr(m, '__all__', []) if hasattr(m, k)})
    if module is not None: ns.update(vars(module))
    return ns

def process_notebook(path: Path, problems: list) -> tuple[nbformat.NotebookNode, set]:
    "The notebook as nbdev's site shows it, and the anchors of the entries it documents."
    nb = nbformat.read(path, as_version=4)
    module = None
    for c in nb.cells:
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', c.source, re.M) if c.cell_type == 'code' else None
        if m: module = importlib.import_module(f'{LIB}.{m.group(1)}'); break
    ns, anchors, cells = _namespace(module), set(), []
    patched = {n for c in nb.cells if c.cell_type == 'code' and re.search(r'^#\|\s*exports?\b', c.source, re.M)
               for n in cell_symbols(c.source) if '.' in n}
    def document(name, level=3):
        try: obj, raw = resolve(name, ns)
        except Exception as e: problems.append(f'{path.name}: cannot document {name}: {e!r}'); return
        cell = nbformat.v4.new_markdown_cell(doc_md(obj, raw, name, level, link_md))
        cell.id = f'doc-{len(anchors)}'                   # stable ids: mkdocs-jupyter's cache keys on the content
        cells.append(cell); anchors.add(anchor(name))
        if inspect.isclass(obj) and obj.__module__.startswith(LIB):
            for k in public_methods(obj, patched): document(f'{name}.{k}', 4)
    for c in nb.cells:
        if c.cell_type == 'markdown':
            c.source = link_md(c.source); cells.append(c); continue
        if c.cell_type != 'code': continue
        d = _directives(c.source)
        if 'hide' in d or d.get('include') == 'false' or 'default_exp' in d or 'exporti' in d: continue
        if 'export' in d or 'exports' in d:
            if 'exports' in d: c.source = _strip(c.source); c.outputs = []; cells.append(c)
            for name in cell_symbols(c.source): document(name)
            continue
        body = [l for l in _strip(c.source).splitlines() if l.strip()]
        if body and all(_SHOW_DOC.match(l) for l in body):
            for l in body: document(_SHOW_DOC.match(l).group(1))
            continue
        c.source = '' if d.get('echo') == 'false' else _strip(c.source)
        if d.get('output') == 'false': c.outputs = []
        if c.source or c.outputs: cells.append(c)
    nb.cells = cells
    return nb, anchors

def lib_modules():
    "The library's modules, in the order of the notebooks that export them."
    names = [m.group(1) for nb in sorted((ROOT / 'nbs').glob('*.ipynb'))
             for m in [re.search(r'#\|\s*default_exp\s+([\w.]+)', nb.read_text())] if m]
    return [importlib.import_module(f'{LIB}.{n}') for n in names]

def api_md(pages: dict, anchors: dict) -> str:
    "An index of the API: per module, every public symbol of `_modidx.py` with the first line of its docstring."
    from mpvae._modidx import d
    out = ['# API reference', '', 'Every public symbol of the library, module by module, each linked to its entry in '
           'the notebook that defines it (`mpvae/_modidx.py` is the index nbdev keeps).', '']
    for mod, syms in d['syms'].items():
        m = importlib.import_module(mod)
        out += [f'## {mod}', '', (inspect.getdoc(m) or '').split('\n')[0], '']
        for qn, (url, _) in syms.items():
            parts = qn[len(mod) + 1:].split('.')
            if any(p.startswith('_') for p in parts): continue
            obj = m
            for p in parts: obj = getattr(obj, p, None)
            doc = (inspect.getdoc(obj) or '').split('\n')[0] if (callable(obj) or isinstance(obj, property)) else ''
            indent = '    ' * (len(parts) - 1)
            out.append(f'{indent}- [`{".".join(parts)}`]({url}){": " + doc if doc else ""}')
        out.append('')
    md, nb_of = prune_links(link_md('\n'.join(out)), anchors), {v: k for k, v in pages.items()}
    # links to the notebooks, not to their pages, so that MkDocs checks them and writes the page's address
    return re.sub(r'\]\(([\w-]+\.html)(#[^)]*)?\)', lambda m: f'](' + nb_of.get(m.group(1), m.group(1)) + (m.group(2) or '') + ')', md)

# ---------------------------------------------------------------- the rendered pages

def pandoc_id(text: str) -> str:
    "The id pandoc (hence Quarto, hence nbdev's site) gives a heading."
    s = re.sub(r'[^\w\s.-]', '', text.strip().lower())
    s = re.sub(r'\s+', '-', s)
    return re.sub(r'^[^a-z]+', '', s) or 'section'

def fix_html(html: str, page_src: str, pages: dict):
    "Heading ids, links between notebooks and out of `nbs/`, and the on-this-page list, for one rendered page."
    from bs4 import BeautifulSoup, Comment
    soup = BeautifulSoup(html, 'html.parser')
    heads = soup.find_all(['h1', 'h2', 'h3', 'h4'])
    toc = []
    seen = {h['id'] for h in heads if 'doc-heading' in (h.get('class') or [])}   # entries keep nbdev's anchors
    for h in heads:
        for a in h.find_all('a', class_='anchor-link'): a.decompose()
        for a in h.find_all('a', class_='doc-source'): a.extract(); h.append(' '); h.append(a)
        if 'doc-heading' not in (h.get('class') or []):
            base = pandoc_id(h.get_text(' ', strip=True)); hid, i = base, 1
            while hid in seen: hid = f'{base}-{i}'; i += 1
            h['id'] = hid; seen.add(hid)
        a = soup.new_tag('a', href=f"#{h['id']}", attrs={'class': 'headerlink', 'title': 'Permanent link'}); a.string = '¶'
        h.append(a)
        level = int(h.name[1])
        text = (h.code if 'doc-heading' in (h.get('class') or []) else h).get_text(' ', strip=True).removesuffix('¶').strip()
        toc.append(dict(level=level, id=h['id'], name=text, children=[]))
    for t in soup.find_all(['a', 'img']):
        attr = 'href' if t.name == 'a' else 'src'
        url = t.get(attr)
        if not url or re.match(r'^([a-z]+:|#|//)', url): continue
        path, _, frag = url.partition('#')
        if path.endswith('.ipynb') and Path(path).name in pages: new = pages[Path(path).name]
        elif path.endswith('.html') and '/' not in path: continue
        else:
            parts = []
            for p in Path(page_src).parent.joinpath(path).parts:
                if p == '..': parts = parts[:-1]
                elif p != '.': parts.append(p)
            new = BLOB + '/'.join(parts)
        t[attr] = new + ('#' + frag if frag else '')
    # nbconvert's MathJax loader (an empty `src`, which would fetch the page itself) and its configuration: no page has math
    for s in soup.find_all('script'):
        if (s.has_attr('src') and (not s['src'] or 'mathjax' in s['src'].lower())) or 'mathjax' in s.get('type', '').lower(): s.decompose()
    for c in soup.find_all(string=lambda t: isinstance(t, Comment) and 'mathjax' in t.lower()): c.extract()
    return str(soup), toc

def nest_toc(flat: list, top: int) -> list:
    "Flat headings -> MkDocs' nested toc tokens, from level `top` down."
    root, stack = [], []
    for t in flat:
        if t['level'] < top: continue
        while stack and stack[-1]['level'] >= t['level']: stack.pop()
        (stack[-1]['children'] if stack else root).append(t); stack.append(t)
    return root

# ---------------------------------------------------------------- MkDocs events

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File
from mkdocs.structure.toc import get_toc

_STATE = {}

CSS = """
.doc-heading { border-top: 1px solid var(--md-default-fg-color--lightest); padding-top: .6em; }
.doc-heading code { font-size: 1em; }
.doc-source { float: right; font-size: .65rem; font-weight: normal; }
.jupyter-wrapper .jp-InputArea-prompt, .jupyter-wrapper .jp-OutputArea-prompt { display: none; }
"""

@event_priority(-100)          # after mkdocs-jupyter has taken the notebooks as pages
def on_files(files, config):
    warnings.filterwarnings('ignore')
    PROC.mkdir(parents=True, exist_ok=True)
    nbs = sorted((f for f in files if f.src_uri.endswith('.ipynb')), key=lambda f: f.src_uri)
    pages = {f.src_uri: page_name(f.src_uri) for f in nbs}
    problems, anchors = [], {}
    done = {}
    for f in nbs: done[f], anchors[pages[f.src_uri]] = process_notebook(Path(config.docs_dir) / f.src_uri, problems)
    for f, nb in done.items():
        for c in nb.cells:
            if c.cell_type == 'markdown': c.source = prune_links(c.source, anchors)
        out = PROC / f.src_uri
        nbformat.write(nb, out)
        f.abs_src_path = str(out)                        # what mkdocs-jupyter renders
        f.dest_uri = f.dest_path = pages[f.src_uri]       # nbdev's page name; the edit link stays nbs/<notebook>
        f.abs_dest_path = str(Path(config.site_dir) / f.dest_uri)
        f.url = f.dest_uri
    for p in problems: warnings.warn(p)
    files.append(File.generated(config, 'api.md', content=api_md(pages, anchors)))
    files.append(File.generated(config, 'stylesheets/extra.css', content=CSS))
    _STATE.update(pages=pages, anchors=anchors, problems=problems)
    return files

def on_page_content(html, page, config, files):
    src = page.file.src_uri
    html, toc = fix_html(html, 'nbs/' + src if src.endswith('.ipynb') else src, _STATE['pages'])
    if src == 'api.md': toc = [t for t in toc if t['level'] == 2]      # the modules; their symbols are the page itself
    page.toc = get_toc(nest_toc(toc, top=2))
    return html

def on_post_build(config):
    if _STATE.get('problems'): raise SystemExit('make_docs: ' + '; '.join(_STATE['problems']))
