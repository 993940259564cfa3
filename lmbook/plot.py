"""One plotting style for the whole book (chapter 1 on): readable, small, colour-blind safe.

Figures get an opaque white background, so that they stay readable on a dark page (the book's dark
mode, a dark JupyterLab theme), and, in a notebook, a text description of what they show (titles,
axes, curves), recorded with the image; the book uses it as the figure's alt text and caption.
"""

from __future__ import annotations

import matplotlib as mpl


def use_book_style() -> None:
    """Apply the book's matplotlib style: call once at the top of a chapter."""
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": 110,
            "savefig.dpi": 110,
            "figure.facecolor": "white",
            "savefig.facecolor": "white",
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.prop_cycle": mpl.cycler(
                color=["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442"]
            ),
            "font.size": 10,
            "legend.frameon": False,
        }
    )
    _describe_figures_in_notebooks()


def describe(fig) -> str:
    """What a figure shows, from its text: each panel's title, axes and labelled curves."""
    panels = []
    for ax in fig.axes:
        title = ax.get_title() or ax.get_title("left")
        x, y = ax.get_xlabel(), ax.get_ylabel()
        curves = ax.get_legend_handles_labels()[1]
        parts = [title] if title else []
        if x and y:
            parts.append(f"{y} against {x}")
        elif x or y:
            parts.append(f"x axis: {x}" if x else f"y axis: {y}")
        if curves:
            parts.append("curves: " + ", ".join(curves))
        if parts:
            panels.append("; ".join(parts))
    title = fig.get_suptitle()
    text = " | ".join([title] * bool(title) + panels)
    return text.replace("$", "")  # mathtext delimiters would read as stray dollars


def _describe_figures_in_notebooks() -> None:
    """In IPython, record `describe(fig)` as the "alt" metadata of every figure's PNG output."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    import importlib

    from matplotlib.figure import Figure

    backend = mpl.get_backend()
    if backend.startswith("module://"):  # the inline backend registers its PNG printer as it loads
        importlib.import_module(backend.removeprefix("module://"))
    png = shell.display_formatter.formatters["image/png"]
    try:
        draw = png.lookup_by_type(Figure)
    except KeyError:  # not the inline backend: nothing is displayed as PNG
        return
    if getattr(draw, "describes", False):
        return

    def draw_and_describe(fig):
        data, text = draw(fig), describe(fig)
        return (data, {"alt": text}) if data is not None and text else data

    draw_and_describe.describes = True
    png.for_type(Figure, draw_and_describe)
