"""Build the docs site into `_docs/` from the notebooks, without Quarto (`make docs`).

Usage: python tools/make_docs.py [nbs] [_docs]

On GitHub the site is built by nbdev's Quarto workflow (.github/workflows/deploy.yaml); Quarto cannot be installed
everywhere, so this script renders the same content with nbconvert alone:

- one page per notebook (`nbs/03_model.ipynb` -> `model.html`, `nbs/index.ipynb` -> `index.html`), with the outputs
  stored in the notebook (figures embedded as data URIs, so a page is one self-contained file). Notebooks are not
  executed here: a page shows what the committed notebook shows.
- nbdev's conventions: `#| hide` / `#| include: false` cells are dropped, `#| echo: false` drops the source,
  `#| output: false` the outputs; `#| export` cells show, instead of their source, the documentation of each public
  function or class they define; a cell `show_doc(X)` shows the documentation of `X` whatever output it stored.
- `api.html`: every symbol in every module's `__all__`, and every public method of its classes, with signature, the
  parameters' docments (fastcore's `docments`) and the docstring.

Links between notebooks (`05_train.ipynb`) become links between pages; relative links out of `nbs/` point to the
repository on GitHub.
"""
from __future__ import annotations
import ast, base64, html, importlib, inspect, mimetypes, re, shutil, sys, warnings
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter
from pygments.formatters import HtmlFormatter

REPO = 'https://github.com/mpvae/mpvae'
LIB = 'mpvae'

def page_name(nb: Path) -> str:
    "The html file nbdev gives a notebook: the number prefix dropped, `index` kept."
    return re.sub(r'^\d+_', '', nb.stem) + '.html'

# ---------------------------------------------------------------- documentation of one object

def _fmt_anno(a) -> str:
    if a is inspect.Parameter.empty or a is None: return ''
    if isinstance(a, str): return a
    return inspect.formatannotation(a)

def _short(v, n=60) -> str:
    s = repr(v)
    return s if len(s) <= n else s[:n - 3] + '...'

def _fmt_param(p: inspect.Parameter) -> str:
    "`name:anno=default` as written in the source (annotations are strings under `from __future__ import annotations`)."
    star = {inspect.Parameter.VAR_POSITIONAL: '*', inspect.Parameter.VAR_KEYWORD: '**'}.get(p.kind, '')
    a = _fmt_anno(p.annotation)
    s = star + p.name + (f':{a}' if a else '')
    if p.default is not inspect.Parameter.empty: s += f'={_short(p.default, 40)}'
    return s

def _unwrap(obj):
    "The function behind a property, staticmethod or classmethod."
    if isinstance(obj, property): return obj.fget
    if isinstance(obj, (staticmethod, classmethod)): return obj.__func__
    return obj

def anchor(qualname: str) -> str:
    "nbdev's anchor for a symbol (`mpvae/_modidx.py` uses the same): the qualified name, lower case."
    return qualname.lower()

def doc_html(obj, name: str, anchor_id: str | None = None, level: int = 3) -> str:
    "An HTML block documenting `obj` under `name`: its signature, a docments table of its parameters, its docstring."
    from fastcore.docments import docments
    raw, kind = obj, ''
    if isinstance(raw, property): kind = 'property'
    elif isinstance(raw, staticmethod): kind = 'staticmethod'
    elif isinstance(raw, classmethod): kind = 'classmethod'
    obj = _unwrap(raw)
    is_cls = inspect.isclass(obj)
    if not (callable(obj) or is_cls):
        sig_txt = f'{name} = {html.escape(_short(obj))}'
        doc, rows = '', []
    else:
        try: sig = inspect.signature(obj)
        except (TypeError, ValueError): sig = None
        params = [] if sig is None else [p for p in sig.parameters.values() if p.name not in ('self', 'cls') or is_cls]
        if kind == 'property':
            ret = '' if sig is None or sig.return_annotation is inspect.Signature.empty else f' -> {_fmt_anno(sig.return_annotation)}'
            sig_txt = html.escape(f"@property {name.split('.')[-1]}{ret}")
        else:
            ps, star_done = [], False
            for p in params:
                if p.kind == inspect.Parameter.VAR_POSITIONAL: star_done = True
                if p.kind == inspect.Parameter.KEYWORD_ONLY and not star_done: ps.append('*'); star_done = True
                ps.append(_fmt_param(p))
            ps = ', '.join(ps)
            ret = '' if sig is None or sig.return_annotation is inspect.Signature.empty else f' -> {_fmt_anno(sig.return_annotation)}'
            sig_txt = html.escape(f"{'class' if is_cls else 'def'} {name.split('.')[-1]}({ps}){ret}")
        own = obj.__doc__ if isinstance(getattr(obj, '__doc__', None), str) else None
        doc = inspect.cleandoc(own) if own else ''     # its own docstring: not one inherited (nn.Module.forward's)
        rows = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                dm = docments(obj.__init__ if is_cls and '__init__' in vars(obj) else obj, full=True)
        except Exception: dm = {}
        for p in params:
            d = dm.get(p.name, {}) if isinstance(dm, dict) else {}
            comment = d.get('docment') if hasattr(d, 'get') else None
            default = '' if p.default is inspect.Parameter.empty else _short(p.default, 40)
            star = {inspect.Parameter.VAR_POSITIONAL: '*', inspect.Parameter.VAR_KEYWORD: '**'}.get(p.kind, '')
            rows.append((star + p.name, _fmt_anno(p.annotation), default, comment or ''))
        r = dm.get('return') if isinstance(dm, dict) else None
        if r is not None and hasattr(r, 'get') and r.get('docment'):
            rows.append(('**Returns**', _fmt_anno(r.get('anno')), '', r['docment']))
    aid = anchor_id or anchor(name)
    out = [f'<div class="doc" id="{html.escape(aid)}">',
           f'<h{level} class="doc-name"><code>{html.escape(name)}</code>{" <em>" + kind + "</em>" if kind else ""}</h{level}>',
           f'<pre class="doc-sig"><code>{sig_txt}</code></pre>']
    if doc: out.append(f'<p class="doc-str">{_md_inline(doc)}</p>')
    if any(r[3] for r in rows):
        out.append('<table class="docments"><thead><tr><th></th><th>Type</th><th>Default</th><th>Details</th></tr></thead><tbody>')
        for n, t, dflt, c in rows:
            out.append(f'<tr><td><code>{html.escape(n)}</code></td><td>{html.escape(t)}</td>'
                       f'<td>{html.escape(dflt)}</td><td>{_md_inline(c)}</td></tr>')
        out.append('</tbody></table>')
    out.append('</div>')
    return '\n'.join(out)

def _md_inline(s: str) -> str:
    "Docstrings and docments are short markdown: escape them, then render `code` spans and paragraphs."
    s = html.escape(s)
    s = re.sub(r'`([^`]+)`', r'<code>\1</code>', s)
    return s.replace('\n\n', '</p><p>')

# ---------------------------------------------------------------- which symbols a cell documents

def _directives(src: str) -> dict:
    d = {}
    for l in src.splitlines():
        m = re.match(r'^#\|\s*([\w-]+)\s*:?\s*(.*)$', l)
        if m: d[m.group(1)] = m.group(2).strip()
    return d

def cell_symbols(src: str, all_names) -> list[str]:
    "Names documented by an exported cell: its public top-level defs and classes in `__all__`, and `@patch`ed methods."
    code = '\n'.join(l for l in src.splitlines() if not l.startswith('#|'))
    try: tree = ast.parse(code)
    except SyntaxError: return []
    names = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): continue
        decos = [ast.unparse(d) for d in node.decorator_list]
        if any(d.split('(')[0] in ('patch', 'patch_to') for d in decos) and not isinstance(node, ast.ClassDef):
            cls = None
            if node.args.args and node.args.args[0].annotation is not None: cls = ast.unparse(node.args.args[0].annotation)
            for d in node.decorator_list:
                if isinstance(d, ast.Call) and d.args: cls = ast.unparse(d.args[0])
            if cls and not node.name.startswith('_'): names.append(f'{cls}.{node.name}')
        elif node.name in all_names: names.append(node.name)
    return names

def resolve(expr: str, ns: dict):
    "Evaluate a dotted name such as `MPVAE.encode` in `ns`, keeping properties and static methods as written."
    head, *rest = expr.split('.')
    obj = ns[head]
    for r in rest:
        obj = inspect.getattr_static(obj, r) if inspect.isclass(obj) else getattr(obj, r)
    return obj

def _lib_namespace(module) -> dict:
    "What a show_doc cell may name: every public name of the library, then everything of this notebook's module."
    ns = {}
    for m in lib_modules():
        ns.update({k: getattr(m, k) for k in getattr(m, '__all__', []) if hasattr(m, k)})
    if module is not None: ns.update(vars(module))
    return ns

_SHOW_DOC = re.compile(r'^\s*show_doc\(\s*([\w.]+)\s*(?:,[^)]*)?\)\s*$')

# ---------------------------------------------------------------- one notebook -> one page

def _embed_local_images(md: str, nb_dir: Path) -> str:
    "Markdown images with a relative path become data URIs, so no page depends on a file outside `_docs/`."
    def sub(m):
        alt, src = m.group(1), m.group(2)
        if re.match(r'^(https?:|data:)', src): return m.group(0)
        p = (nb_dir / src).resolve()
        if not p.exists(): return m.group(0)
        mime = mimetypes.guess_type(p.name)[0] or 'image/png'
        return f'![{alt}](data:{mime};base64,{base64.b64encode(p.read_bytes()).decode()})'
    return re.sub(r'!\[([^\]]*)\]\(([^)\s]+)\)', sub, md)

def process_notebook(nb_path: Path, problems: list) -> tuple[nbformat.NotebookNode, str, str]:
    "The notebook as a reader sees it (hidden cells dropped, docs in place of exported code), its title and subtitle."
    nb = nbformat.read(nb_path, as_version=4)
    module, all_names = None, []
    for c in nb.cells:
        m = re.search(r'^#\|\s*default_exp\s+(\S+)', c.source, re.M) if c.cell_type == 'code' else None
        if m:
            try: module = importlib.import_module(f'{LIB}.{m.group(1)}')
            except ImportError as e: problems.append(f'{nb_path.name}: module not exported yet: {e}'); break
            all_names = list(getattr(module, '__all__', []))
            break
    ns = _lib_namespace(module)
    title, subtitle, cells, titled = nb_path.stem, '', [], False
    for c in nb.cells:
        src = c.source
        if c.cell_type == 'markdown':
            if not titled and src.lstrip().startswith('# '):
                lines = src.strip().splitlines()
                title = lines[0][2:].strip()
                rest = [l for l in lines[1:] if l.strip()]
                if rest and rest[0].startswith('>'):
                    subtitle = rest[0].lstrip('> ').strip(); rest = rest[1:]
                cells.append(nbformat.v4.new_markdown_cell(f'<p class="subtitle">{_md_inline(subtitle)}</p>' if subtitle else ''))
                if rest: cells.append(nbformat.v4.new_markdown_cell(_embed_local_images('\n'.join(rest), nb_path.parent)))
                titled = True
                continue
            c.source = _embed_local_images(src, nb_path.parent)
            cells.append(c); continue
        if c.cell_type != 'code': continue
        d = _directives(src)
        if 'hide' in d or d.get('include') == 'false' or 'default_exp' in d: continue
        if 'export' in d or 'exporti' in d or 'exports' in d:
            if 'exports' in d: cells.append(_strip(c))
            if 'exporti' not in d:
                for name in cell_symbols(src, all_names):
                    try: obj = resolve(name, ns)
                    except Exception as e:
                        problems.append(f'{nb_path.name}: cannot document {name}: {e!r}'); continue
                    cells.append(nbformat.v4.new_markdown_cell(doc_html(obj, name)))
            continue
        body = '\n'.join(l for l in src.splitlines() if not l.startswith('#|')).strip()
        calls = [l for l in body.splitlines() if l.strip()]
        if calls and all(_SHOW_DOC.match(l) for l in calls):
            for l in calls:
                name = _SHOW_DOC.match(l).group(1)
                try: cells.append(nbformat.v4.new_markdown_cell(doc_html(resolve(name, ns), name)))
                except Exception as e: problems.append(f'{nb_path.name}: cannot document {name}: {e!r}')
            continue
        c = _strip(c)
        if d.get('echo') == 'false': c.source = ''
        if d.get('output') == 'false': c.outputs = []
        if c.source or c.outputs: cells.append(c)
    nb.cells = cells
    return nb, title, subtitle

def _strip(c):
    c.source = '\n'.join(l for l in c.source.splitlines() if not l.startswith('#|')).strip()
    return c

def _fix_links(body: str, pages: dict) -> str:
    "Notebook links -> page links; other relative links (out of nbs/) -> the file on GitHub."
    def sub(m):
        attr, url = m.group(1), html.unescape(m.group(2))
        if re.match(r'^([a-z]+:|#|//)', url): return m.group(0)
        path, _, frag = url.partition('#')
        if path.endswith('.ipynb') and Path(path).name in pages:
            new = pages[Path(path).name] + ('#' + frag if frag else '')
        else:
            rel = Path('nbs', path)
            parts = []
            for p in rel.parts:
                if p == '..': parts = parts[:-1]
                elif p != '.': parts.append(p)
            new = f'{REPO}/blob/main/{"/".join(parts)}' + ('#' + frag if frag else '')
        return f'{attr}="{html.escape(new)}"'
    return re.sub(r'(href)="([^"]*)"', sub, body)

# ---------------------------------------------------------------- the site

CSS = """
body{margin:0;font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;line-height:1.5;color:#222}
nav{position:fixed;top:0;left:0;bottom:0;width:14rem;overflow:auto;padding:1rem;background:#f6f8fa;border-right:1px solid #ddd}
nav a{display:block;color:#0969da;text-decoration:none;padding:.1rem 0} nav a.here{font-weight:bold}
main{margin-left:16rem;padding:1rem 2rem;max-width:60rem}
.subtitle{font-size:1.15rem;color:#555;margin-top:-.5rem}
pre{background:#f6f8fa;padding:.6rem;overflow:auto;font-size:.85rem;white-space:pre-wrap;overflow-wrap:anywhere}
code{font-size:.9em;overflow-wrap:anywhere} .doc-sig{white-space:pre-wrap;overflow-wrap:anywhere}
.api-toc{columns:2;font-size:.95rem} .api-toc li{break-inside:avoid}
.jp-OutputArea pre{background:#fff;border-left:3px solid #ddd}
img{max-width:100%} table{border-collapse:collapse;font-size:.9rem} td,th{border:1px solid #ddd;padding:.2rem .5rem}
.doc{border-top:1px solid #ccc;margin:1.2rem 0;padding-top:.3rem} .doc-name{margin:.2rem 0} .doc-sig{background:#eef3fb}
.jp-InputPrompt,.jp-OutputPrompt{display:none}
"""

MATHJAX = ('<script>window.MathJax={tex:{inlineMath:[["$","$"]]}}</script>'
           '<script defer src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>')

def lib_modules():
    "The library's modules, in the order of the notebooks that export them."
    root = Path(__file__).resolve().parent.parent
    names = [m.group(1) for nb in sorted((root / 'nbs').glob('*.ipynb'))
             for m in [re.search(r'#\|\s*default_exp\s+([\w.]+)', nb.read_text())] if m]
    mods = []
    for n in names:
        try: mods.append(importlib.import_module(f'{LIB}.{n}'))
        except ImportError: pass      # a notebook whose module is not exported yet (reported with its page)
    return mods

def _page(title, body, pages_nav, here):
    nav = ''.join(f'<a href="{p}"{" class=here" if p == here else ""}>{html.escape(t)}</a>' for p, t in pages_nav)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)} - {LIB}</title>'
            f'<link rel="stylesheet" href="style.css">{MATHJAX}</head>\n<body><nav><a href="index.html"><b>{LIB}</b></a>{nav}</nav>'
            f'<main>\n<h1>{html.escape(title)}</h1>\n{body}\n</main></body></html>\n')

def _method_func(v):
    "The function behind a classmethod or staticmethod (Python's, or fastcore's `@patch(cls_method=True)`); else `v`."
    if isinstance(v, (classmethod, staticmethod)): return v.__func__
    if type(v).__name__ == '_clsmethod' and callable(getattr(v, 'f', None)): return v.f
    return v

def public_methods(cls) -> list[str]:
    "Public methods and properties a class defines itself (including `@patch`ed ones), not those it inherits."
    out = []
    for k, v in vars(cls).items():
        if k.startswith('_'): continue
        f = _unwrap(_method_func(v))
        if isinstance(v, property) or inspect.isfunction(f): out.append(k)
    return out

def api_page(doc_anchors: dict) -> tuple[str, list[str]]:
    "The body of api.html and the qualified names it documents."
    parts, names = [], []
    toc = [f'<li><a href="#{m.__name__}"><code>{m.__name__}</code></a>: {_md_inline((m.__doc__ or "").strip().splitlines()[0] if m.__doc__ else "")}</li>'
           for m in lib_modules()]
    parts.append('<p>One section per module, in the order of the notebooks:</p><ul class="api-toc">' + ''.join(toc) + '</ul>')
    for m in lib_modules():
        first = (m.__doc__ or '').strip().splitlines()
        parts.append(f'<h2 id="{m.__name__}">{m.__name__}</h2>')
        if first: parts.append(f'<p>{_md_inline(first[0])}</p>')
        for n in getattr(m, '__all__', []):
            obj = getattr(m, n)
            qn = f'{m.__name__}.{n}'
            names.append(qn)
            parts.append(doc_html(obj, n, anchor_id=qn))
            where = doc_anchors.get(anchor(n))
            if where: parts.append(f'<p class="where">In the notebook: <a href="{where}#{anchor(n)}">{where[:-5]}</a></p>')
            if inspect.isclass(obj) and obj.__module__.startswith(LIB):
                for k in public_methods(obj):
                    v = inspect.getattr_static(obj, k)
                    v = _method_func(v)   # a classmethod: document the function it wraps
                    home = getattr(_unwrap(v), '__module__', None) or m.__name__     # a method @patched in from another module
                    mq = f'{home if home.startswith(LIB) else m.__name__}.{n}.{k}'
                    parts.append(doc_html(v, f'{n}.{k}', anchor_id=mq, level=4))
                    names.append(mq)
                    where = doc_anchors.get(anchor(f'{n}.{k}'))
                    if where:
                        parts.append(f'<p class="where">In the notebook: <a href="{where}#{anchor(n + "." + k)}">'
                                     f'{where[:-5]}</a></p>')
    return '\n'.join(parts), names

def build(nbs='nbs', out='_docs', quiet=False) -> dict:
    "Write the site into `out`; returns the pages written, the documented names and any problem met."
    warnings.filterwarnings('ignore')
    nbs, out = Path(nbs), Path(out)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))     # the repository's mpvae
    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    nb_paths = sorted(nbs.glob('*.ipynb'), key=lambda p: (p.stem != 'index', p.stem))
    pages = {p.name: page_name(p) for p in nb_paths}
    exporter = HTMLExporter(template_name='basic')
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    problems, rendered = [], []
    for p in nb_paths:
        nb, title, _ = process_notebook(p, problems)
        body, _ = exporter.from_notebook_node(nb)
        rendered.append((pages[p.name], title, _fix_links(body, pages)))
    nav = [(f, t) for f, t, _ in rendered if f != 'index.html'] + [('api.html', 'API reference')]
    doc_anchors = {}
    for f, t, body in rendered:
        for a in re.findall(r'<div class="doc" id="([^"]+)"', body): doc_anchors.setdefault(html.unescape(a), f)
        (out / f).write_text(_page(t, body, nav, f))
    api_body, names = api_page(doc_anchors)
    (out / 'api.html').write_text(_page('API reference', api_body, nav, 'api.html'))
    (out / 'style.css').write_text(CSS + HtmlFormatter().get_style_defs('.highlight'))
    if not quiet:
        print(f'wrote {len(rendered) + 1} pages and {len(names)} API entries into {out}/')
        for pr in problems: print('warning:', pr)
    return dict(pages=[f for f, _, _ in rendered] + ['api.html'], names=names, problems=problems)

if __name__ == '__main__': build(*sys.argv[1:])
