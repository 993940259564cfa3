"""The HTML book builds with zero warnings, offline, and renders what a reader needs.

One build (``jupyter-book build -W -n --keep-going``) into a temporary folder, then checks on the
HTML: chapter 1 has math, figures, a notebook download and collapsed solutions; MathJax is a local
file on every page that uses it; no page asks a CDN for anything; the bibliography has entries.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from book_build import MATHJAX, ROOT, build_book

CHAPTER = "chapters/01_ngram"
SOLUTION_BEGIN = "### BEGIN SOLUTION"

# Hosts and services that would make a page load something from the network.
NETWORK_MARKERS = re.compile(
    r"cdn\.|cdnjs|jsdelivr|unpkg|googleapis|gstatic|cloudflare|thebe|binder|colab\.research"
    r"|hypothes\.is|utteranc\.es|plausible\.io|googletagmanager|google-analytics",
    re.IGNORECASE,
)
# Attributes that make the browser fetch a resource as the page loads (links to read are fine).
REMOTE_RESOURCE = re.compile(
    r"<(?:script|img|iframe|source|link)\b[^>]*\b(?:src|href)=[\"'](?:https?:)?//", re.IGNORECASE
)

pytestmark = pytest.mark.skipif(
    not MATHJAX.is_file(),
    reason=f"MathJax is not installed ({MATHJAX.relative_to(ROOT)}); `make test` installs it first",
)


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """Build the book into a temporary folder (once per run: tests/test_browser.py reads the same
    build); return (exit code, output, html folder)."""
    built = build_book(tmp_path_factory)
    assert not built.wrote_cache, "the book build wrote .jupyter_cache into the repository"
    return built.code, built.output, built.html


@pytest.fixture(scope="module")
def html(build):
    code, output, site = build
    assert code == 0, f"jupyter-book build failed (exit code {code}):\n{output[-6000:]}"
    return site


def pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "mathjax" not in p.relative_to(site).parts)


def read(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def local_target(page: Path, url: str) -> Path:
    """The file a relative URL in `page` points at (query and fragment removed)."""
    return (page.parent / unquote(urlsplit(url).path)).resolve()


def test_build_has_no_warnings(build):
    code, output, _ = build
    warnings = [line for line in output.splitlines() if "WARNING" in line or "ERROR" in line]
    assert code == 0, f"jupyter-book build failed (exit code {code}):\n{output[-6000:]}"
    assert not warnings, "the book build printed warnings:\n" + "\n".join(warnings)
    assert "build succeeded" in output


def test_chapter_page_has_math_and_figures(html):
    page = html / f"{CHAPTER}.html"
    assert page.is_file(), f"{CHAPTER}.ipynb was not rendered to {page.relative_to(html)}"
    text = read(page)
    assert re.search(r'class="math notranslate nohighlight">\s*\\[(\[]', text), "no math on the chapter page"
    images = re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', text)
    pngs = [src for src in images if src.startswith("data:image/png;base64,")
            or ("_images/" in src and src.endswith(".png") and local_target(page, src).is_file())]
    assert pngs, f"no embedded PNG figure on the chapter page (images found: {images[:5]})"


def test_mathjax_is_a_local_file_on_every_page(html):
    chapter = html / f"{CHAPTER}.html"
    checked = []
    for page in pages(html):
        for src in re.findall(r'<script\b[^>]*\bsrc="([^"]*mathjax[^"]*)"', read(page), re.IGNORECASE):
            assert "://" not in src and not src.startswith("//"), f"{page.name} loads MathJax from {src}"
            target = local_target(page, src)
            assert target.is_file(), f"{page.relative_to(html)}: MathJax script {src} -> {target} does not exist"
            assert target.is_relative_to(html.resolve()), f"{page.relative_to(html)}: {src} points outside the book"
            checked.append(page)
    assert chapter in checked, "the chapter page has math but no MathJax script"
    assert html / "book" / "notation.html" in checked


def test_no_page_uses_the_network(html):
    for page in pages(html):
        text = read(page)
        remote = REMOTE_RESOURCE.search(text)
        assert not remote, f"{page.relative_to(html)} loads a remote resource: {remote.group(0)}"
        marker = NETWORK_MARKERS.search(text)
        context = text[max(0, marker.start() - 80): marker.end() + 80] if marker else ""
        assert not marker, f"{page.relative_to(html)} mentions a CDN or online service: ...{context}..."


def test_chapter_can_be_downloaded_as_a_notebook(html):
    page = html / f"{CHAPTER}.html"
    links = re.findall(r'<a\b[^>]*\bhref="([^"]+\.ipynb)"', read(page))
    assert links, "the chapter page has no .ipynb download link"
    target = local_target(page, links[0])
    assert target.is_file(), f"the download link {links[0]} points at a missing file"
    nb = json.loads(target.read_text(encoding="utf-8"))
    assert nb["cells"], "the downloadable notebook has no cells"


def test_bibliography_lists_entries(html):
    text = read(html / "book" / "bibliography.html")
    entries = re.findall(r'role="doc-biblioentry"', text)
    assert len(entries) >= 20, f"the bibliography lists {len(entries)} entries"
    for name in ("Shannon", "Kneser", "Vaswani", "Bengio"):
        assert name in text


def test_solutions_are_collapsed_behind_show_solution(html):
    nb = json.loads((ROOT / f"{CHAPTER}.ipynb").read_text(encoding="utf-8"))
    n_solutions = sum(
        1 for c in nb["cells"] if c["cell_type"] == "code" and SOLUTION_BEGIN in "".join(c["source"])
    )
    assert n_solutions, f"{CHAPTER}.ipynb has no solution cell"
    text = read(html / f"{CHAPTER}.html")
    toggles = re.findall(r"<details\b([^>]*)>\s*<summary\b[^>]*>\s*<p\b[^>]*>Show solution</p>", text)
    assert len(toggles) == n_solutions, (
        f"{n_solutions} solution cells but {len(toggles)} 'Show solution' toggles on the page"
    )
    assert all(not re.search(r"\bopen\b", attrs) for attrs in toggles), "a solution is rendered open"
    assert "Hide solution" in text
