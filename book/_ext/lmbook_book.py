"""LM Book's own Sphinx extension: what a reader needs on a chapter page, computed at build time.

- Under each chapter's title, a box says how long the chapter takes top to bottom at each profile
  (from ``bench/results/chapters.json``, which ``bench/bench_chapters.py`` writes) and what it needs
  (the datasets its code loads, found through ``lmbook.data``).
- Every figure a notebook cell draws gets alt text and a caption that say what it shows: the cell's
  own choice (myst-nb's ``image``/``figure`` cell metadata) wins, then the description that
  ``lmbook.plot`` recorded with the image when the chapter ran, then one read off the cell's code
  (the strings it passes as titles, axis labels and curve labels), then the sentence of the prose
  before the cell that introduces the figure.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import inspect
import json
import re
from pathlib import Path

from docutils import nodes

CHAPTER = re.compile(r"chapters/\d\d_\w+$")
PROFILES = {"test": "CI size", "cpu": "a 2-core laptop", "gpu": "full size, CUDA"}
BUDGETS = {"test": 3 * 60, "cpu": 15 * 60}  # CONTRIBUTING.md: seconds a chapter may take


# ---------------------------------------------------------------------------------------------
# How long a chapter takes, and what it needs


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 90 else f"{seconds // 60} min {seconds % 60:02d} s"


def _datasets_used(code: str) -> list:
    """The lmbook.data datasets that `code` names, directly or through a function of lmbook.data."""
    from lmbook import data

    def named(text: str) -> set[str]:
        return {name for name in data.REGISTRY if re.search(rf"[\"']{name}[\"']", text)}

    functions = {name: inspect.getsource(fn) for name, fn in inspect.getmembers(data, inspect.isfunction)
                 if fn.__module__ == data.__name__}
    uses = {name: named(src) for name, src in functions.items()}
    for _ in functions:  # what a function uses includes what the functions it calls use
        for name, src in functions.items():
            for other in functions:
                if other != name and re.search(rf"\b{other}\(", src):
                    uses[name] |= uses[other]
    found = named(code)
    for name in functions:
        if re.search(rf"\b{name}\(", code):
            found |= uses[name]
    return [data.REGISTRY[name] for name in sorted(found)]


def _plan(times: dict, chapter: str, code: str) -> nodes.Element:
    box = nodes.admonition(classes=["chapter-plan"])
    box += nodes.title("", "Running this chapter")
    timing = nodes.paragraph("", "Top to bottom in a fresh kernel: ")
    machines, cpu_times = [], False
    for i, profile in enumerate(PROFILES):
        entry = times.get(f"{chapter}/{profile}")
        timing += nodes.Text(", " if i else "")
        timing += nodes.literal("", profile)
        timing += nodes.Text(f" ({PROFILES[profile]}) ")
        if entry:
            # on a busy machine the wall time stretches; the kernel's CPU time, where recorded, is
            # about what the chapter takes on a machine of its own
            cpu_times |= "cpu_seconds" in entry
            timing += nodes.strong("", _duration(entry.get("cpu_seconds", entry["seconds"])))
            if entry["machine"] not in machines:
                machines.append(entry["machine"])
        elif profile in BUDGETS:
            timing += nodes.Text(f"not measured yet (at most {_duration(BUDGETS[profile])})")
        else:
            timing += nodes.Text("not measured yet")
    timing += nodes.Text(". Measured on " + "; ".join(machines) + "." if machines else ".")
    if cpu_times:
        timing += nodes.Text(" Where a busy machine stretched the wall time, the time shown is the kernel's CPU"
                             " time: about what the chapter takes on a machine of its own.")
    box += timing
    needs = nodes.paragraph("", "Needs: the packages of ")
    needs += nodes.literal("", "requirements.txt")
    datasets = _datasets_used(code)
    if datasets:
        needs += nodes.Text(" and the datasets ")
        for i, ds in enumerate(datasets):
            needs += nodes.Text(", " if i else "")
            needs += nodes.literal("", ds.name)
            needs += nodes.Text(f" ({ds.size / 1e6:.1f} MB)")
        needs += nodes.Text(", found in ")
        needs += nodes.literal("", "$LMBOOK_DATA_DIR")
        needs += nodes.Text(" or downloaded once and checked")
    needs += nodes.Text(". A GPU is optional: with CUDA the chapter runs at the ")
    needs += nodes.literal("", "gpu")
    needs += nodes.Text(" profile by itself.")
    box += needs
    return box


# ---------------------------------------------------------------------------------------------
# What a figure shows, read off the code that drew it

TEXT_CALLS = {"set_title": "title", "title": "title", "suptitle": "title", "set_xlabel": "x",
              "xlabel": "x", "set_ylabel": "y", "ylabel": "y"}
TEXT_KEYWORDS = {"title": "title", "xlabel": "x", "ylabel": "y", "label": "curve"}


def _text(node: ast.AST, env: dict[str, str]) -> str | None:
    """The string an expression gives, with '…' for what only running it would tell."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "…" for v in node.values)
    if isinstance(node, ast.Name):
        return env.get(node.id)
    return None


def _texts(tree: ast.AST, helpers: dict[str, ast.FunctionDef], env: dict[str, str], depth: int = 0):
    """(panel, kind, text) for every title, axis label and curve label the code sets."""
    for call in (n for n in ast.walk(tree) if isinstance(n, ast.Call)):
        func = call.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        panel = ast.unparse(func.value) if isinstance(func, ast.Attribute) else ""
        if name in TEXT_CALLS and call.args and (text := _text(call.args[0], env)):
            yield panel, TEXT_CALLS[name], text
        for kw in call.keywords:
            if kw.arg in TEXT_KEYWORDS and (text := _text(kw.value, env)):
                yield panel, TEXT_KEYWORDS[kw.arg], text
        if name in helpers and depth < 2 and not isinstance(func, ast.Attribute):
            helper = helpers[name]
            params = [a.arg for a in helper.args.args]
            inner = {p: t for p, a in zip(params, call.args) if (t := _text(a, env))}
            inner |= {kw.arg: t for kw in call.keywords if kw.arg and (t := _text(kw.value, env))}
            yield from _texts(helper, helpers, inner, depth + 1)


def describe_code(source: str, helpers: dict[str, ast.FunctionDef]) -> str:
    """What the figure drawn by `source` shows, in lmbook.plot.describe's words ('' if unknown)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return ""
    panels: dict[str, dict[str, list[str]]] = {}
    for panel, kind, text in _texts(tree, helpers, {}):
        if text.strip("… "):
            texts = panels.setdefault(panel, {}).setdefault(kind, [])
            if text not in texts:
                texts.append(text)
    described = []
    for texts in panels.values():
        texts = {kind: [t for t in ts if "…" not in t or len(re.sub(r"\W|…", "", t)) >= 3] for kind, ts in texts.items()}
        parts = texts.get("title", [])[:1]
        x, y = ((texts.get(axis) or [""])[0] for axis in "xy")
        if x and y:
            parts.append(f"{y} against {x}")
        elif x or y:
            parts.append(f"x axis: {x}" if x else f"y axis: {y}")
        if texts.get("curve"):
            parts.append("curves: " + ", ".join(texts["curve"]))
        if parts:
            described.append("; ".join(parts))
    return " | ".join(described).replace("$", "")


def introduction(markdown: str) -> str:
    """The sentence of the prose before a figure that introduces it: the last one that ends with a
    colon or speaks of a plot or picture ('' if none does)."""
    sentences = re.split(r"(?<=[.!?:])\s+", re.sub(r"[*`$]", "", " ".join(markdown.split())))
    about = [s for s in sentences if s.endswith(":") or re.search(r"\b(plot\w*|pictures?|figures?|below)\b", s, re.I)]
    return about[-1].rstrip(":") if about else ""


def _figures(notebook: dict) -> dict[str, str]:
    """sha256 of each PNG a code cell shows -> what it shows."""
    cells = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    helpers: dict[str, ast.FunctionDef] = {}
    for cell in cells:
        try:
            tree = ast.parse("".join(cell["source"]))
        except SyntaxError:
            continue
        helpers |= {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    found, prose = {}, ""
    for cell in notebook["cells"]:
        if cell["cell_type"] == "markdown":
            prose = "".join(cell["source"])
            continue
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if not png:
                continue
            digest = hashlib.sha256(base64.b64decode("".join(png))).hexdigest()
            recorded = output.get("metadata", {}).get("image/png", {}).get("alt", "")
            found[digest] = (recorded or describe_code("".join(cell["source"]), helpers)
                             or introduction(prose))
        prose = ""
    return found


def _describe_figures(doctree: nodes.document, notebook: dict) -> None:
    described = _figures(notebook)
    for image in list(doctree.findall(nodes.image)):
        text = described.get(Path(image["uri"]).stem)
        if not text or image.get("alt") or isinstance(image.parent, nodes.figure):
            continue  # not a notebook figure, nothing known, or the cell chose its own alt/caption
        image["alt"] = text
        figure, name = nodes.figure(), f"figure-{Path(image['uri']).stem[:8]}"
        figure["ids"] = [name] if name not in doctree.ids else []  # the same image twice: a generated id
        doctree.set_id(figure)
        image.replace_self(figure)
        figure += image
        figure += nodes.caption("", text)


# ---------------------------------------------------------------------------------------------


def on_doctree_read(app, doctree: nodes.document) -> None:
    docname = app.env.docname
    source = Path(app.env.doc2path(docname))
    if source.suffix != ".ipynb":
        return
    notebook = json.loads(source.read_text(encoding="utf-8"))
    _describe_figures(doctree, notebook)
    if not CHAPTER.match(docname):
        return
    times_file = Path(app.srcdir) / app.config.lmbook_chapter_times
    app.env.note_dependency(str(times_file))
    times = json.loads(times_file.read_text(encoding="utf-8")) if times_file.is_file() else {}
    code = "\n".join("".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code")
    section = next(doctree.findall(nodes.section), None)
    if section is not None and section.children and isinstance(section[0], nodes.title):
        section.insert(1, _plan(times, Path(docname).name, code))


def setup(app):
    app.add_config_value("lmbook_chapter_times", "bench/results/chapters.json", "env")
    app.connect("doctree-read", on_doctree_read)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
