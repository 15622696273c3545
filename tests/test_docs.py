"""`make docs` (tools/make_docs.py): the site builds from the committed notebooks, every page parses, every internal link
and anchor resolves, every figure a notebook stores is embedded in its page, and the API page documents every public
symbol nbdev indexes (mpvae/_modidx.py) with its docstring and docments."""
import base64, importlib.util, inspect, io, re
from pathlib import Path
from urllib.parse import unquote

import nbformat
import pytest
from bs4 import BeautifulSoup

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.xdist_group('docs')      # one worker builds the site once for the whole module
_spec = importlib.util.spec_from_file_location('make_docs', ROOT / 'tools' / 'make_docs.py')
make_docs = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(make_docs)

@pytest.fixture(scope='module')
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp('site') / '_docs'
    res = make_docs.build(ROOT / 'nbs', out, quiet=True)
    pages = {p.name: BeautifulSoup(p.read_text(), 'html.parser') for p in out.glob('*.html')}
    return out, res, pages

def _hidden(src):
    return any(re.match(r'^#\|\s*(hide|default_exp|exporti?\b|include:\s*false|output:\s*false)', l) for l in src.splitlines())

def _n_figures(nb):
    "Image outputs a reader of the notebook sees (cells not hidden, not exported)."
    return sum(1 for c in nb.cells if c.cell_type == 'code' and not _hidden(c.source)
               for o in c.get('outputs', []) if any(k.startswith('image/') for k in o.get('data', {})))

def test_one_page_per_notebook_and_each_opens(site):
    out, res, pages = site
    nbs = sorted((ROOT / 'nbs').glob('*.ipynb'))
    expected = {('index' if p.stem == 'index' else re.sub(r'^\d+_', '', p.stem)) + '.html' for p in nbs} | {'api.html'}
    assert set(pages) == expected
    for name, soup in pages.items():
        assert soup.find('html') and soup.find('main') and soup.find('h1').get_text(strip=True), name
        assert (out / 'style.css').exists()
    # the index is index.ipynb: its title and its first section heading
    idx = nbformat.read(ROOT / 'nbs' / 'index.ipynb', as_version=4)
    heads = [l[3:].strip() for c in idx.cells if c.cell_type == 'markdown' for l in c.source.splitlines() if l.startswith('## ')]
    assert heads and heads[0] in pages['index.html'].get_text()

def test_internal_links_resolve(site):
    out, _, pages = site
    ids = {n: {t['id'] for t in s.find_all(id=True)} for n, s in pages.items()}
    n_links = 0
    for name, soup in pages.items():
        for tag, attr in (('a', 'href'), ('img', 'src'), ('link', 'href'), ('script', 'src')):
            for t in soup.find_all(tag):
                url = t.get(attr)
                if not url or re.match(r'^([a-z]+:|//)', url): continue
                path, _, frag = url.partition('#')
                target = path or name
                assert (out / target).exists(), f'{name}: {url} -> missing {target}'
                if frag: assert unquote(frag) in ids.get(target, set()), f'{name}: {url} -> no anchor {frag}'
                n_links += 1
    assert n_links > 100      # the nav bar alone links every page from every page

def test_every_figure_embedded(site):
    out, _, pages = site
    for nb_path in sorted((ROOT / 'nbs').glob('*.ipynb')):
        page = pages[make_docs.page_name(nb_path)]
        imgs = page.find_all('img')
        assert all(i['src'].startswith('data:image/') for i in imgs), nb_path.name
        assert len(imgs) >= _n_figures(nbformat.read(nb_path, as_version=4)), nb_path.name

def test_every_public_symbol_documented(site):
    out, res, pages = site
    from mpvae._modidx import d
    api = pages['api.html']
    ids = {t['id'] for t in api.find_all(class_='doc')}
    public = {k for m in d['syms'].values() for k in m if not any(p.startswith('_') for p in k.split('.'))}
    assert public and public <= ids, sorted(public - ids)
    norm = lambda s: re.sub(r'[\s`]+', '', s)     # markdown's backticks become <code>; spacing is the browser's
    from fastcore.docments import docments
    n_docments = 0
    for qn in public:
        mod, *rest = qn.rsplit('.', len(qn.split('.')) - 2)
        obj = importlib.import_module(mod)
        for r in rest: obj = getattr(obj, r)
        block = norm(api.find(id=qn).get_text(' '))
        assert rest[-1] in block
        doc = inspect.getdoc(obj) if callable(obj) or isinstance(obj, property) else None
        if doc and not inspect.isclass(obj) and obj.__doc__:
            assert norm(' '.join(doc.split()[:6])) in block, qn
        if inspect.isfunction(obj):
            for p, c in docments(obj).items():
                if c and p not in ('return', 'self', 'cls'):
                    assert norm(c) in block, (qn, p); n_docments += 1
    assert n_docments > 50

def _png():
    from PIL import Image
    b = io.BytesIO(); Image.new('RGB', (4, 3), (255, 0, 0)).save(b, format='PNG')
    return b.getvalue()

def test_small_notebook_rendered_as_nbdev_would(tmp_path):
    "A notebook made here: hidden cells dropped, exported code replaced by its docs, show_doc rendered, figures inlined."
    nbs = tmp_path / 'nbs'; nbs.mkdir()
    (nbs / 'fig.png').write_bytes(_png())
    png = base64.b64encode(_png()).decode()
    code = nbformat.v4.new_code_cell
    cells = [nbformat.v4.new_markdown_cell('# A title\n\n> A subtitle\n\nSee [the other](02_other.ipynb#sec) and ![f](fig.png).'),
             code('#| default_exp loss'),
             code('#| hide\nSECRET_HIDDEN = 1'),
             code('#| export\ndef recon_nll(logits, x):\n    "x"\n    return 0'),
             code('show_doc(MPVAELoss.forward)'),
             code('plot()', outputs=[nbformat.v4.new_output('display_data', data={'image/png': png, 'text/plain': 'fig'})])]
    nbformat.write(nbformat.v4.new_notebook(cells=cells), nbs / '01_one.ipynb')
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell('# Other\n\n## Sec')]), nbs / '02_other.ipynb')
    res = make_docs.build(nbs, tmp_path / '_docs', quiet=True)
    assert res['problems'] == [] and set(res['pages']) >= {'one.html', 'other.html', 'api.html'}
    soup = BeautifulSoup((tmp_path / '_docs' / 'one.html').read_text(), 'html.parser')
    txt = soup.get_text(' ')
    assert soup.h1.get_text() == 'A title' and 'A subtitle' in txt
    assert 'SECRET_HIDDEN' not in txt and 'default_exp' not in txt and 'return 0' not in txt
    # the exported function shows the library's real signature and docments, the show_doc cell the method's docs
    from mpvae.loss import recon_nll, MPVAELoss
    block = soup.find(id='recon_nll').get_text(' ')
    assert 'def recon_nll(logits:torch.Tensor, x:torch.Tensor' in block and inspect.getdoc(recon_nll).split()[0] in block
    assert soup.find(id='mpvaeloss.forward') and 'def forward(' in txt
    imgs = soup.find_all('img')
    assert len(imgs) == 2 and all(i['src'].startswith('data:image/png;base64,') for i in imgs)
    assert soup.find('a', href='other.html#sec')


def test_readme_is_a_front_door():
    "README.md stays at most 9,000 bytes, and its Quick look (the first code) starts within the first 2,500 characters."
    text = (Path(__file__).resolve().parents[1]/'README.md').read_text()
    assert len(text.encode()) <= 9000, len(text.encode())   # room for own images and Table 1 (issue 39)
    assert 0 < text.index('## Quick look') < 2500

def test_subtitles_render_and_api_has_a_module_index(site):
    "A page's subtitle renders its `code` spans (no literal backticks), code wraps, and the API page opens on a module index."
    out, res, pages = site
    subs = {n: s.find('p', class_='subtitle') for n, s in pages.items()}
    assert not [n for n, p in subs.items() if p is not None and '`' in p.get_text()]
    assert subs['cli.html'].find('code') is not None
    assert 'white-space:pre-wrap' in (out / 'style.css').read_text()
    toc = pages['api.html'].find('ul', class_='api-toc')
    linked = {a['href'] for a in toc.find_all('a')}
    assert {'#mpvae.core', '#mpvae.stages', '#mpvae.cli'} <= linked
    assert all(pages['api.html'].find(id=h[1:]) for h in linked)   # each entry leads to its module's section
