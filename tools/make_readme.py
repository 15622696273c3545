"""Write README.md from nbs/index.ipynb (nbdev-readme needs Quarto, which is not available here).

Usage: python tools/make_readme.py [nbs/index.ipynb] [README.md]
Cells flagged `#| hide` are dropped, `#|` directive lines are stripped, and outputs are kept. The file is
written atomically and only when its content changes, so `git status` stays clean when nothing changed.
"""
import sys, os, re, tempfile
from pathlib import Path
import nbformat
from nbconvert import MarkdownExporter

HEADER = "<!-- Generated from nbs/index.ipynb by tools/make_readme.py (`make readme`); edit the notebook, not this file. -->\n\n"

def notebook_to_markdown(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    cells = []
    for c in nb.cells:
        src = c.source
        if c.cell_type == 'code':
            lines = src.splitlines()
            if any(re.match(r'^#\|\s*(hide|exporti?|default_exp)\b', l) for l in lines): continue
            c.source = '\n'.join(l for l in lines if not l.startswith('#|')).strip()
            if not c.source: continue
        cells.append(c)
    nb.cells = cells
    nb.metadata['language_info'] = {'name': 'python'}   # code cells as ```python fences (highlighted; tests/test_readme.py runs them)
    body, _ = MarkdownExporter().from_notebook_node(nb)
    return HEADER + re.sub(r'\n{3,}', '\n\n', body).strip() + '\n'

def main(nb_path='nbs/index.ipynb', out='README.md'):
    md, out = notebook_to_markdown(nb_path), Path(out)
    if out.exists() and out.read_text() == md: return
    fd, tmp = tempfile.mkstemp(dir=out.parent or '.', prefix='.README.', suffix='.tmp')
    umask = os.umask(0o022); os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)   # mkstemp's 0600 would make README.md private
    with os.fdopen(fd, 'w') as f: f.write(md)
    os.replace(tmp, out)
    print(f"wrote {out}")

if __name__ == '__main__': main(*sys.argv[1:])
