"""One plotting style for the whole book (chapter 1 on): readable, small, colour-blind safe."""

from __future__ import annotations

import matplotlib as mpl


def use_book_style() -> None:
    """Apply the book's matplotlib style: call once at the top of a chapter."""
    mpl.rcParams.update(
        {
            "figure.figsize": (6.4, 3.6),
            "figure.dpi": 110,
            "savefig.dpi": 110,
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
