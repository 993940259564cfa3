"""The rendered book, as a reader's browser shows it: Chromium driven by Playwright.

The book is built once (tests/book_build.py, shared with tests/test_book.py), served on loopback
HTTP, and every page is opened once in one browser. Each page must load with no console error and
no failed request, ask for nothing outside the book's own files (the book reads offline), load every
image (each figure with a description), resolve every internal link and anchor, and typeset its math:
MathJax output wherever the source has math, and no raw ``$$``, ``\\(`` or ``\\[``, nor ``$...$``
around TeX, left in the text. Chapter pages must also open and close their "Show solution" toggles,
offer the notebook as a download, have a table of contents whose links land on their sections, and
keep every plot's contrast in dark mode (the theme's toggle). Once: searching "Kneser" leads to
chapter 1.

Each check is shown to fail on a planted fault (a CDN script, a broken image, raw ``$$``, ...), put into
a copy of a built page that only the test's server sees.

Needs Chromium (Debian/Ubuntu: ``apt-get install chromium``; ``.ci/run`` installs it) and the Python
package ``playwright`` (requirements.txt). Set ``LMBOOK_CHROMIUM`` to use another Chromium or Chrome.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from book_build import MATHJAX, build_book

HOW_TO_ENABLE = (
    "install Chromium (Debian/Ubuntu: `sudo apt-get install chromium`) or point LMBOOK_CHROMIUM at a "
    "Chromium/Chrome binary, and `pip install -r requirements.txt` (Playwright); "
    "`make test` then runs them"
)


def find_chromium() -> str | None:
    wanted = os.environ.get("LMBOOK_CHROMIUM")
    names = [wanted] if wanted else ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
    for name in names:
        found = shutil.which(name) or (name if Path(name).is_file() else None)
        if found:
            return found
    return None


try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - depends on the machine
    sync_playwright = None
CHROMIUM = find_chromium()

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason=f"Playwright is not installed: {HOW_TO_ENABLE}"),
    pytest.mark.skipif(CHROMIUM is None, reason=f"no Chromium found for the browser tests: {HOW_TO_ENABLE}"),
    pytest.mark.skipif(not MATHJAX.is_file(), reason="MathJax is not installed (vendor/mathjax); `make test` installs it"),
]

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions",
    # Any host but the book's own server fails at once, as it would for a reader offline: a request
    # for it is still recorded (and fails the test), but never waits on the network.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# A <details> toggle: is it open, and is its content visible? And the same after each of two clicks.
TOGGLE_STATE = "d => [d.open, d.querySelector(':scope > :not(summary)').checkVisibility()]"
TOGGLE_TWICE = f"[0, 1].map(() => {{ d.querySelector(':scope > summary').click(); return ({TOGGLE_STATE})(d); }})"
MIN_CONTRAST = 4.5  # WCAG AA for text: between a plot's background and its darkest (or lightest) ink

# Run in the page once it has loaded: wait for MathJax's first typesetting and for every image.
SETTLE = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await Promise.all([...document.images].map(img => img.decode().catch(() => null)));
}"""

# Run in the page: what the checks need to know about it.
PROBE = r"""() => {
  const skip = new Set(['SCRIPT', 'STYLE', 'PRE', 'CODE', 'TEXTAREA', 'MJX-CONTAINER', 'NOSCRIPT']);
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {
    acceptNode(node) {
      for (let el = node.parentElement; el; el = el.parentElement) {
        if (skip.has(el.tagName) || el.classList.contains('highlight')) return NodeFilter.FILTER_REJECT;
      }
      return NodeFilter.FILTER_ACCEPT;
    }
  });
  for (let node; (node = walker.nextNode());) {
    const text = node.textContent;
    // $$, \( \) \[ \] left over, or $...$ around TeX (what MathJax does not typeset on its own)
    const m = text.match(/\$\$|\\[()\[\]]|\$[^$\s][^$]*[\\^_{}][^$]*\$/);
    if (m) raw.push(text.slice(Math.max(0, m.index - 40), m.index + 40).trim());
  }
  const math = [...document.querySelectorAll('.math')];
  const article = document.querySelector('.bd-article') || document.body;
  return {
    url: location.href,
    ids: [...document.querySelectorAll('[id]')].map(e => e.id)
         .concat([...document.querySelectorAll('a[name]')].map(e => e.name)),
    links: [...document.querySelectorAll('a[href]')].map(a => a.href),
    images: [...document.images].map(img => ({src: img.currentSrc || img.src, width: img.naturalWidth,
                                             alt: img.getAttribute('alt'), inArticle: article.contains(img)})),
    math: math.length,
    mathjax: Boolean(window.MathJax && MathJax.startup),
    untypeset: math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 60)),
    mathErrors: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent.slice(0, 60)),
    raw: raw,
    theme: document.documentElement.dataset.theme,
  };
}"""


# ---------------------------------------------------------------------------------------------
# The book, served over loopback HTTP, with planted changes layered over its files


class Site:
    """Serves `root` on 127.0.0.1; `overlay` maps a path ('chapters/01_ngram.html') to other bytes."""

    def __init__(self, root: Path):
        self.root = root.resolve()
        self.overlay: dict[str, bytes] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                path = unquote(urlsplit(self.path).path).lstrip("/")
                data = site.read(path + "index.html" if path.endswith("/") or not path else path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", mimetypes.guess_type(path)[0] or "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")  # a planted page is never read from cache
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

            def handle(self):
                try:
                    super().handle()
                except ConnectionError:  # the browser gave up on a response: its own events say so
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def read(self, path: str) -> bytes | None:
        if path in self.overlay:
            return self.overlay[path]
        file = (self.root / path).resolve()
        return file.read_bytes() if file.is_relative_to(self.root) and file.is_file() else None

    def text(self, path: str) -> str:
        return self.read(path).decode("utf-8")

    def path_of(self, url: str) -> str | None:
        """The site path of a URL of this server, else None."""
        if not url.startswith(self.origin + "/"):
            return None
        return unquote(urlsplit(url).path).lstrip("/") or "index.html"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Visit:
    """One page as the browser saw it."""

    path: str
    problems: dict[str, list[str]] = field(default_factory=dict)
    probe: dict = field(default_factory=dict)

    def add(self, check: str, problem: str) -> None:
        self.problems.setdefault(check, []).append(problem)


class Reader:
    """One browser tab on the site, recording what every page load asks for and prints."""

    def __init__(self, browser, site: Site):
        self.site = site
        self.context = browser.new_context(color_scheme="light", viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.visit: Visit | None = None
        self.page.on("console", lambda msg: msg.type == "error" and self.note(
            "console", f"{msg.text} ({msg.location.get('url') or 'inline'})"))
        self.page.on("pageerror", lambda err: self.note("console", f"uncaught: {err}"))
        self.page.on("request", self.on_request)
        self.page.on("requestfailed", self.on_failure)
        self.page.on("response", lambda r: r.status >= 400 and self.note("requests", f"{r.url}: HTTP {r.status}"))

    def note(self, check: str, problem: str) -> None:
        if self.visit is not None:
            self.visit.add(check, problem)

    def on_request(self, request) -> None:
        url = request.url
        if not (url.startswith(self.site.origin + "/") or url.split(":", 1)[0] in ("data", "blob", "about")):
            self.note("offline", f"asks for {url} (not one of the book's files)")

    def on_failure(self, request) -> None:
        # ERR_ABORTED: cancelled because the test moved on (a favicon still loading, say), not a fault
        if request.failure != "net::ERR_ABORTED":
            self.note("requests", f"{request.url}: {request.failure}")

    def open(self, path: str, redirects_to: str | None = None) -> Visit:
        self.visit = Visit(path)
        self.page.goto(f"{self.site.origin}/{path}", wait_until="load")
        if redirects_to:
            self.page.wait_for_url(f"{self.site.origin}/{redirects_to}", timeout=20_000)
            self.visit.probe = {"ids": [], "links": [self.page.url], "images": [], "math": 0}
            return self.visit
        self.page.evaluate(SETTLE)
        self.visit.probe = self.page.evaluate(PROBE)
        return self.visit

    def close(self):
        self.context.close()


# ---------------------------------------------------------------------------------------------
# The checks, each on one visited page (the links check needs every page's anchors)


def check_page(visit: Visit) -> None:
    probe = visit.probe
    for img in probe["images"]:
        if img["width"] == 0:
            visit.add("images", f"image did not load: {img['src']}")
        alt = (img["alt"] or "").strip()
        if img["inArticle"] and (not alt or re.search(r"\.(png|jpe?g|gif|svg)$|_images/", alt)):
            visit.add("alt", f"figure without a description (alt {alt!r}): {img['src']}")
    if probe["math"] and not probe["mathjax"]:
        visit.add("math", f"{probe['math']} math elements but MathJax did not load")
    for source in probe["untypeset"]:
        visit.add("math", f"math left untypeset: {source!r}")
    for error in probe["mathErrors"]:
        visit.add("math", f"MathJax error: {error!r}")
    for context in probe["raw"]:
        visit.add("math", f"raw TeX delimiters in the text: ...{context}...")


def check_links(visits: dict[str, Visit], site: Site) -> None:
    """Every link to the book's own files points at an existing file, and its anchor at an id there."""
    ids = {path: set(v.probe["ids"]) for path, v in visits.items()}
    for visit in visits.values():
        for url in sorted(set(visit.probe["links"])):
            path = site.path_of(url)
            if path is None:
                continue  # links to other sites are for the reader to follow; nothing loads them
            if site.read(path) is None:
                visit.add("links", f"link to a missing file: {url}")
                continue
            fragment = unquote(urlsplit(url).fragment)
            if fragment and path in ids and fragment not in ids[path]:
                visit.add("links", f"link to a missing anchor: {url}")


def contrast(png: bytes) -> float:
    """Contrast ratio between an image's background (its median luminance) and its ink (the 1% of
    pixels furthest from it), as WCAG defines the ratio of two luminances."""
    import matplotlib.image

    rgb = matplotlib.image.imread(io.BytesIO(png), format="png")[..., :3].astype(float)
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    lum = linear @ np.array([0.2126, 0.7152, 0.0722])
    background = float(np.median(lum))
    ink = float(np.percentile(lum, 1 if background > 0.18 else 99))
    hi, lo = max(background, ink), min(background, ink)
    return (hi + 0.05) / (lo + 0.05)


def check_solutions(reader: Reader, visit: Visit) -> None:
    """Every "Show solution" toggle opens (showing the solution) and closes again."""
    toggles = reader.page.locator("details:has(> summary .collapsed:text-is('Show solution'))")
    if toggles.count() == 0:
        visit.add("solutions", "no 'Show solution' toggle on the chapter page")
        return
    # The first toggle with the mouse, as a reader does; the others by clicks sent in the page,
    # which toggle them the same way at a fraction of the cost.
    first = toggles.first
    states = []
    for _ in range(2):
        first.locator("> summary").click()
        states.append(first.evaluate(TOGGLE_STATE))
    all_states = [states] + toggles.evaluate_all(f"all => all.slice(1).map(d => {TOGGLE_TWICE})")
    for i, states in enumerate(all_states):
        if [tuple(s) for s in states] != [(True, True), (False, False)]:
            visit.add("solutions", f"solution {i + 1}: (open, content visible) after each of two clicks "
                                   f"were {states}, expected [(True, True), (False, False)]")


def check_download(reader: Reader, visit: Visit) -> None:
    """The page offers its notebook as a download, and the link gives a notebook."""
    site = reader.site
    urls = reader.page.locator("a[href$='.ipynb']").evaluate_all("links => links.map(a => a.href)")
    if not urls:
        visit.add("download", "no .ipynb download link")
    for url in urls:
        data = site.read(site.path_of(url) or "")
        try:
            ok = data is not None and bool(json.loads(data)["cells"])
        except (ValueError, KeyError):
            ok = False
        if not ok:
            visit.add("download", f"the download link {url} does not give a notebook")


def check_toc(reader: Reader, visit: Visit) -> None:
    """The page's table of contents links to its sections, and a click lands on one."""
    page = reader.page
    toc = page.locator("nav#pst-page-toc-nav a[href^='#']")
    hrefs = toc.evaluate_all("links => links.map(a => a.getAttribute('href'))")
    if len(hrefs) < 3:
        visit.add("toc", f"the page's table of contents has {len(hrefs)} links")
    ids = set(visit.probe["ids"])
    for href in hrefs:
        if unquote(href[1:]) not in ids:
            visit.add("toc", f"table of contents link {href} has no target on the page")
    if hrefs and unquote(hrefs[-1][1:]) in ids:
        toc.last.click()
        page.wait_for_function("h => location.hash === h", arg=hrefs[-1], timeout=15_000)
        top = page.evaluate("id => document.getElementById(id).getBoundingClientRect().top", unquote(hrefs[-1][1:]))
        if not -5 <= top < page.viewport_size["height"] / 2:
            visit.add("toc", f"clicking {hrefs[-1]} left its section at y={top:.0f}, not at the top of the window")


def to_dark_mode(page) -> None:
    """Click the theme's colour-mode button until the page is dark (it cycles light, dark, auto)."""
    for _ in range(3):
        if page.evaluate("document.documentElement.dataset.theme") == "dark":
            return
        page.locator(".theme-switch-button").first.click()
    assert page.evaluate("document.documentElement.dataset.theme") == "dark", "the theme toggle never gave dark mode"


def check_dark(reader: Reader, visit: Visit) -> None:
    """In dark mode, every plot keeps the contrast between its background and its text and lines."""
    page = reader.page
    to_dark_mode(page)
    plots = page.locator(".bd-article img")
    for i in range(plots.count()):
        img = plots.nth(i)
        ratio = contrast(img.screenshot(animations="disabled"))
        if ratio < MIN_CONTRAST:
            visit.add("dark", f"plot {img.get_attribute('src')} has contrast {ratio:.1f} in dark mode "
                              f"(at least {MIN_CONTRAST} needed: give it a background)")


CHAPTER_CHECKS = {"solutions": check_solutions, "download": check_download, "toc": check_toc, "dark": check_dark}


def pages(site: Site) -> list[str]:
    """Every page of the book (not the files of MathJax, the theme or the notebooks' sources)."""
    paths = (p.relative_to(site.root) for p in site.root.rglob("*.html"))
    return sorted(str(p) for p in paths if p.parts[0] not in ("mathjax", "_static", "_sources"))


def is_chapter(path: str) -> bool:
    return re.fullmatch(r"chapters/\d\d_\w+\.html", path) is not None


# ---------------------------------------------------------------------------------------------
# Fixtures: one build, one server, one browser, one pass over every page


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    built = build_book(tmp_path_factory)
    assert built.code == 0, f"jupyter-book build failed (exit code {built.code}):\n{built.output[-6000:]}"
    served = Site(built.html)
    yield served
    served.close()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def visits(site, browser) -> dict[str, Visit]:
    """Every page, visited once; chapter pages get their chapter checks in the same visit."""
    reader = Reader(browser, site)
    done = {}
    try:
        for path in pages(site):
            if path == "index.html":  # a redirect to the first page
                done[path] = reader.open(path, redirects_to="book/intro.html")
                continue
            visit = done[path] = reader.open(path)
            check_page(visit)
            if is_chapter(path):
                for check in CHAPTER_CHECKS.values():
                    check(reader, visit)
        check_links(done, site)
    finally:
        reader.close()
    return done


def problems(visits: dict[str, Visit], check: str) -> list[str]:
    return [f"{path}: {p}" for path, v in visits.items() for p in v.problems.get(check, [])]


# ---------------------------------------------------------------------------------------------
# The book as it is


def test_every_page_was_visited(visits):
    assert {"book/intro.html", "book/notation.html", "search.html", "chapters/01_ngram.html"} <= set(visits)
    assert sum(map(is_chapter, visits)) >= 7


@pytest.mark.parametrize("check", ["console", "requests", "offline", "images", "links", "math", "alt"])
def test_every_page(visits, check):
    found = problems(visits, check)
    assert not found, f"{len(found)} {check} problem(s):\n" + "\n".join(found[:40])


@pytest.mark.parametrize("check", CHAPTER_CHECKS)
def test_every_chapter_page(visits, check):
    found = problems(visits, check)
    assert not found, f"{len(found)} {check} problem(s):\n" + "\n".join(found[:40])


def test_math_is_typeset_where_the_source_has_math(visits):
    assert visits["book/notation.html"].probe["math"] > 0
    assert visits["chapters/01_ngram.html"].probe["math"] > 0


def test_dark_mode_was_on_for_the_plots(visits):
    themes = {path: v.probe["theme"] for path, v in visits.items() if is_chapter(path)}
    # pages after the first chapter open in the mode the reader chose there
    assert list(themes.values())[1:] == ["dark"] * (len(themes) - 1), themes


def search_leads_to_chapter_1(reader: Reader) -> str | None:
    """Search "Kneser" from the first page as a reader does (the search box), click the result in
    chapter 1; what went wrong, or None."""
    page, site = reader.page, reader.site
    reader.open("book/intro.html")
    page.keyboard.press("Control+k")
    box = page.locator("form.bd-search input[name='q']").first
    box.fill("Kneser")
    box.press("Enter")
    page.wait_for_url(re.compile(r"/search\.html\?q="))
    results = page.locator("#search-results ul.search li a")
    # results appear one by one; stop at chapter 1's, or when the search says it has finished
    page.wait_for_function("""() => [...document.querySelectorAll('#search-results ul.search li a')]
                                    .some(a => a.pathname.endsWith('/chapters/01_ngram.html'))
                                 || document.querySelector('#search-results .search-summary')""", timeout=30_000)
    urls = results.evaluate_all("links => links.map(a => a.href)")
    hits = [i for i, url in enumerate(urls) if site.path_of(url) == "chapters/01_ngram.html"]
    if not hits:
        return f"searching 'Kneser' did not find chapter 1; results: {urls}"
    results.nth(hits[0]).click()
    page.wait_for_url(re.compile(r"/chapters/01_ngram\.html"), wait_until="domcontentloaded")
    title = page.locator("h1").first.inner_text()
    return None if "N-gram" in title else f"the result led to a page titled {title!r}"


def test_search_finds_kneser_in_chapter_1(reader):
    problem = search_leads_to_chapter_1(reader)
    assert problem is None, problem


# ---------------------------------------------------------------------------------------------
# Planted faults: each check fails on a copy of a page with one thing broken


def transparent_plot() -> bytes:
    """A plot saved on a transparent background, with matplotlib's dark text and lines."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), dpi=80)
    ax = fig.subplots()
    ax.plot([1, 2, 3], [3, 1, 2], color="black")
    ax.set(title="loss", xlabel="step", ylabel="nats")
    out = io.BytesIO()
    fig.savefig(out, format="png", transparent=True)
    return out.getvalue()


def in_head(html: str, tag: str) -> str:
    return html.replace("</head>", tag + "\n</head>", 1)


def in_article(html: str, tag: str) -> str:
    return re.sub(r'(<article class="bd-article"[^>]*>)', lambda m: m.group(1) + tag, html, count=1)


# Small pages, so that each planted fault costs little: one without math, one with a little, and the
# chapter with the fewest math and figures.
PAGE, MATH_PAGE, CHAPTER_PAGE = "book/setup.html", "book/faq.html", "chapters/06_tokenization.html"
PLANTED = {
    # name: (page, change to its HTML, the check that must fail)
    "cdn-script": (PAGE, lambda h: in_head(h, '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js"></script>'),
                   "offline"),
    "console-error": (PAGE, lambda h: in_head(h, "<script>document.no.such.thing</script>"), "console"),
    "missing-file": (PAGE, lambda h: in_head(h, '<link rel="stylesheet" href="../_static/gone.css">'), "requests"),
    "broken-image": (PAGE, lambda h: in_article(h, '<img src="../_images/no-such-plot.png" alt="a plot">'), "images"),
    "no-alt-text": (PAGE, lambda h: in_article(h, '<img src="../_static/favicon.svg" alt="../_images/abc.png">'), "alt"),
    "broken-link": (PAGE, lambda h: in_article(h, '<a href="no-such-page.html">a page</a>'), "links"),
    "broken-anchor": (PAGE, lambda h: in_article(h, '<a href="#no-such-section">a section</a>'), "links"),
    "no-mathjax": (MATH_PAGE, lambda h: re.sub(r'<script[^>]*mathjax[^>]*></script>', "", h), "math"),
    # MathJax typesets well-formed $$...$$ and \(...\) wherever they are: what stays raw is a typo...
    "raw-dollars": (MATH_PAGE, lambda h: in_article(h, r"<p>The mean is $$\frac{1}{n}\sum_i x_i here.</p>"), "math"),
    "raw-parens": (MATH_PAGE, lambda h: in_article(h, r"<p>Inline math \(x^2 left raw.</p>"), "math"),
    # ... or single dollars, which MathJax leaves alone (what a page shows if dollarmath is off)
    "raw-dollar": (MATH_PAGE, lambda h: in_article(h, r"<p>The loss $\ell_t$ per token.</p>"), "math"),
}
# The chapter checks each look at their own part of the page only (the solutions, the download link,
# the table of contents, the images), so their faults are planted together, in one copy of a chapter.
CHAPTER_FAULTS = {
    "solutions": lambda h: in_head(h, "<style>details.hide > :not(summary) {display: none !important}</style>"),
    "download": lambda h: h.replace("_sources/chapters/06_tokenization.ipynb", "_sources/chapters/gone.ipynb"),
    "toc": lambda h: re.sub(r'(id="pst-page-toc-nav".*?href=")#[^"]+', r"\1#no-such-section", h, count=1, flags=re.S),
    # the theme puts a white background behind images in dark mode, except those marked dark-ready
    "dark": lambda h: in_article(h, '<p><img class="dark-light" src="../_images/planted.png" alt="a plot of loss"></p>'),
}


@pytest.fixture(scope="module")
def reader(site, browser):
    """One tab for the search and the planted faults (the pass over every page has its own)."""
    tab = Reader(browser, site)
    yield tab
    tab.close()


def visit_planted(reader: Reader, path: str, changes, files: dict[str, bytes]) -> Visit:
    """Visit a copy of `path` changed by each of `changes` (HTML -> HTML), with `files` served too."""
    site = reader.site
    html = site.text(path)
    for change in changes:
        changed = change(html)
        assert changed != html, f"a planted change to {path} changed nothing"
        html = changed
    site.overlay = {path: html.encode("utf-8"), **files}
    try:
        visit = reader.open(path)
        check_page(visit)
        check_links({path: visit}, site)
        if is_chapter(path):
            for check in CHAPTER_CHECKS.values():
                check(reader, visit)
    finally:
        site.overlay = {}
    return visit


@pytest.mark.parametrize("name", PLANTED)
def test_each_check_fails_on_a_planted_fault(reader, name):
    path, change, check = PLANTED[name]
    visit = visit_planted(reader, path, [change], {})
    assert visit.problems.get(check), f"the {check} check missed the planted fault; it found {visit.problems}"


@pytest.fixture(scope="module")
def planted_chapter(reader) -> Visit:
    return visit_planted(reader, CHAPTER_PAGE, CHAPTER_FAULTS.values(), {"_images/planted.png": transparent_plot()})


@pytest.mark.parametrize("check", CHAPTER_FAULTS)
def test_each_chapter_check_fails_on_a_planted_fault(planted_chapter, check):
    found = planted_chapter.problems.get(check)
    assert found, f"the {check} check missed the planted fault; it found {planted_chapter.problems}"


def test_search_check_fails_without_the_word_in_the_index(reader):
    site = reader.site
    site.overlay = {"searchindex.js": re.sub("(?i)kneser", "renamed", site.text("searchindex.js")).encode()}
    try:
        assert search_leads_to_chapter_1(reader) is not None
    finally:
        site.overlay = {}
