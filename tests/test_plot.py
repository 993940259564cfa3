"""Figures say what they show: lmbook.plot describes a drawn figure (recorded with its image when a
chapter runs), and the book's build reads the same description off the code that drew it when no
recorded one exists (book/_ext/lmbook_book.py). Both are the figure's alt text and caption."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import matplotlib
import pytest
from matplotlib.figure import Figure

from lmbook.plot import describe, use_book_style

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "book" / "_ext"))
from lmbook_book import describe_code  # noqa: E402

DRAW = '''
fig, (ax1, ax2) = plt.subplots(1, 2)
ax1.plot(steps, losses, label="train")
ax1.plot(steps, val, label="validation")
ax1.set(xlabel="step", ylabel="loss (nats)", title="Training curve")
ax1.legend()
ax2.set_title("Learning rate")
ax2.set_xlabel("step")
'''


def drawn() -> Figure:
    fig = Figure()
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot([1, 2], [3, 2], label="train")
    ax1.plot([1, 2], [3.5, 2.5], label="validation")
    ax1.set(xlabel="step", ylabel="loss (nats)", title="Training curve")
    ax1.legend()
    ax2.set_title("Learning rate")
    ax2.set_xlabel("step")
    return fig


def test_describe_names_titles_axes_and_curves():
    assert describe(drawn()) == ("Training curve; loss (nats) against step; curves: train, validation"
                                 " | Learning rate; x axis: step")


def test_the_build_reads_the_same_description_off_the_code():
    assert describe_code(DRAW, {}) == describe(drawn())


def test_the_build_follows_a_plotting_helper_defined_in_the_notebook():
    helper = ast.parse('def plot_curve(xs, title):\n    fig, ax = plt.subplots()\n'
                       '    ax.set(xlabel="n", ylabel="perplexity", title=title)\n').body[0]
    text = describe_code('plot_curve([1, 2], "Words: train vs validation")', {"plot_curve": helper})
    assert text == "Words: train vs validation; perplexity against n"


def test_f_strings_and_mathtext():
    assert describe_code('ax.set_title(f"GPT, {n:.1f}M parameters")\nax.set_ylabel("$\\\\ell$ per token")', {}) \
        == "GPT, …M parameters; y axis: \\ell per token"
    fig = Figure()
    fig.subplots().set_title("$\\alpha$ sweep")
    assert describe(fig) == "\\alpha sweep"


@pytest.fixture
def restore_rc():
    saved = matplotlib.rcParams.copy()
    yield
    matplotlib.rcParams.update(saved)


def test_book_style_draws_on_an_opaque_background(restore_rc):
    use_book_style()  # outside IPython: only the style
    assert matplotlib.colors.to_rgba(matplotlib.rcParams["figure.facecolor"])[3] == 1
    assert matplotlib.colors.to_rgba(matplotlib.rcParams["savefig.facecolor"])[3] == 1


def test_a_figure_with_no_text_is_described_by_the_prose_that_introduces_it():
    from lmbook_book import introduction

    assert introduction("The weights show where it looks. Each row is one output character:") \
        == "Each row is one output character"
    assert introduction("**Exercise 6.** Bengio et al. plotted embeddings. Train it with `emb_dim=2` and plot "
                        "the 27 embeddings. Which characters end up close?") \
        == "Train it with emb_dim=2 and plot the 27 embeddings."
    assert introduction("A paragraph about something else.") == ""
