"""Classroom assignments (tools/assignments.py, nbgrader): the release hides solutions and hidden
tests; the instructor's solutions score full marks; the untouched release scores zero with
messages a student can act on; a copycat who calls the reference instead of solving scores zero;
edited tests are put back. On the fixture chapter (fast) and on every real chapter, graded at the
`test` profile; each real chapter is one test (all three submissions in one `nbgrader autograde`),
and `make test` spreads those tests over both workers (tests/conftest.py). Each test builds its own
course folder under tmp; nothing is written into the repository."""

import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import assignments  # noqa: E402
import notebooks  # noqa: E402

CHAPTER_SOURCES = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.py"))
FIXTURE = ROOT / "tests" / "fixtures" / "90_fixture.py"


@pytest.fixture(autouse=True)
def test_profile(monkeypatch):
    """Autograding runs the whole chapter: at the `test` profile it takes minutes, not hours."""
    monkeypatch.setenv("LMBOOK_PROFILE", "test")


def _regions(source: str, begin: str, end: str) -> list[str]:
    return re.findall(re.escape(begin) + r"\n(.*?)\n[ \t]*" + re.escape(end), source, re.DOTALL)


def _by_grade_id(nb) -> dict:
    return {c.metadata.nbgrader.grade_id: c for c in nb.cells if "grade_id" in c.metadata.get("nbgrader", {})}


def check_release(source_path: Path, release_path: Path) -> None:
    """No solution or hidden-test text is left in the release; solutions became stubs."""
    source, release = nbformat.read(source_path, as_version=4), nbformat.read(release_path, as_version=4)
    released = _by_grade_id(release)
    text = "\n".join(c.source for c in release.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text, f"{release_path.name}: {marker!r} is left in the release"
    for grade_id, cell in _by_grade_id(source).items():
        meta = cell.metadata.nbgrader
        if meta.solution:
            assert "raise NotImplementedError()" in released[grade_id].source
            bodies = _regions(cell.source, notebooks.SOLUTION_BEGIN, notebooks.SOLUTION_END)
        else:
            bodies = _regions(cell.source, notebooks.HIDDEN_BEGIN, notebooks.HIDDEN_END)
        for body in bodies:
            assert body.strip() not in released[grade_id].source, f"{grade_id}: the release shows {body!r}"


def solved_release(course: Path, assignment: str, name: str, folder: Path) -> Path:
    """The release with the instructor's solution cells pasted in: a student who solved it all."""
    source = _by_grade_id(nbformat.read(course / "source" / assignment / name, as_version=4))
    nb = nbformat.read(course / "release" / assignment / name, as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = source[cell.metadata.nbgrader.grade_id].source
    folder.mkdir(exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder / name


def check_full_marks(result: dict) -> None:
    failed = {g: t["message"] for g, t in result["tests"].items() if t["score"] != t["max_score"]}
    assert not failed, f"the instructor's solutions fail these tests: {failed}"
    assert result["score"] == result["max_score"] > 0


def check_zero_with_messages(result: dict) -> None:
    assert result["max_score"] > 0
    passed = [g for g, t in result["tests"].items() if t["score"] > 0]
    assert not passed, f"these tests pass on the untouched release (they test nothing): {passed}"
    assert result["score"] == 0
    for grade_id, test in result["tests"].items():
        message = test["message"]
        actionable = "NotImplementedError" in message or re.search(r"AssertionError: \S", message)
        assert actionable, (f"test {grade_id} fails on the untouched release with {message!r}: a student "
                            "needs NotImplementedError (an unsolved exercise) or an assert message")


# ---------------------------------------------------------------------------------------------
# The fixture chapter


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """The fixture chapter built into an nbgrader course folder of its own."""
    folder = tmp_path_factory.mktemp("fixture")
    py = folder / FIXTURE.name
    shutil.copyfile(FIXTURE, py)
    nbformat.write(notebooks.build(py), py.with_suffix(".ipynb"))
    course = folder / "course"
    [release] = assignments.build([py.with_suffix(".ipynb")], course)
    assert release == course / "release" / "ch90" / "90_fixture.ipynb"
    return course


def test_config_keeps_the_course_in_its_folder(course):
    config = (course / "nbgrader_config.py").read_text()
    assert 'course_id = "lmbook"' in config and "gradebook.db" in config
    assert (course / "gradebook.db").exists()


def test_source_metadata(course):
    nb = nbformat.read(course / "source" / "ch90" / "90_fixture.ipynb", as_version=4)
    assert all(c.cell_type != "code" or (not c.outputs and c.execution_count is None) for c in nb.cells)
    cells = _by_grade_id(nb)
    assert len(cells) == len(nb.cells), "every cell carries nbgrader metadata with its own grade_id"
    meta = {g: c.metadata.nbgrader for g, c in cells.items()}
    assert meta["char_counts"] == {"grade": True, "solution": False, "locked": True, "points": 2.0,
                                   "grade_id": "char_counts", "schema_version": 3}
    assert meta["answer_char_counts"] == {"grade": False, "solution": True, "locked": False,
                                          "grade_id": "answer_char_counts", "schema_version": 3}
    readonly = [m for g, m in meta.items() if g.startswith("cell-")]
    assert len(readonly) == 10 and all(m["locked"] and not m["grade"] and not m["solution"] for m in readonly)
    assert not any("hide-input" in c.metadata.get("tags", []) for c in nb.cells)


def test_release_hides_solutions_and_hidden_tests(course):
    check_release(course / "source" / "ch90" / "90_fixture.ipynb", course / "release" / "ch90" / "90_fixture.ipynb")


def test_instructor_solutions_score_full_marks(course, tmp_path):
    submission = solved_release(course, "ch90", "90_fixture.ipynb", tmp_path / "instructor")
    result = assignments.autograde(course, "ch90", "instructor", submission)
    check_full_marks(result)
    assert result["score"] == 5.0
    graded = nbformat.read(result["notebook"], as_version=4)
    assert "profile: test" in graded.cells[1].outputs[0].text, "the autograder runs at LMBOOK_PROFILE"
    assert "### BEGIN HIDDEN TESTS" in _by_grade_id(graded)["char_counts"].source, "hidden tests are run"


@pytest.fixture(scope="module")
def students(course, tmp_path_factory):
    """Three more submissions, autograded together by one `nbgrader autograde` (one start-up):
    blank (the untouched release), wrong (one wrong answer), tamperer (rewrote tests and set-up)."""
    name = "90_fixture.ipynb"
    release = course / "release" / "ch90" / name
    assignments.submit(course, "ch90", "blank", release)

    wrong = solved_release(course, "ch90", name, tmp_path_factory.mktemp("wrong"))
    nb = nbformat.read(wrong, as_version=4)
    answer = _by_grade_id(nb)["answer_bigram_counts"]
    answer.source = answer.source.replace("zip(text, text[1:])", "zip(text, text)")
    nbformat.write(nb, wrong)
    assignments.submit(course, "ch90", "wrong", wrong)

    nb = nbformat.read(release, as_version=4)
    for cell in nb.cells:
        if notebooks.autograded_test(cell):
            cell.source = cell.source.splitlines()[0] + "\npass"
        elif cell.source.startswith("from collections import Counter"):
            cell.source += "\nchar_counts = bigram_counts = lambda text: 0"
    tampered = tmp_path_factory.mktemp("tamperer") / name
    nbformat.write(nb, tampered)
    assignments.submit(course, "ch90", "tamperer", tampered)

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMBOOK_PROFILE", "test")
        assignments.nbgrader(course, "autograde", "ch90", "--create", "--force")
    return {s: assignments.results(course, "ch90", s, name) for s in ("blank", "wrong", "tamperer")}


def test_untouched_release_scores_zero_with_actionable_messages(students):
    check_zero_with_messages(students["blank"])
    assert students["blank"]["tests"]["char_counts"]["message"].startswith("NotImplementedError")


def test_wrong_answers_get_the_assert_message(students):
    result = students["wrong"]
    assert result["score"] == 2.0
    assert "bigram_counts('abab') should be" in result["tests"]["bigram_counts"]["message"]


def test_edited_tests_and_setup_are_put_back(students):
    """A student who rewrites the tests (or the chapter's own code) gains nothing."""
    assert students["tamperer"]["score"] == 0
    graded = nbformat.read(students["tamperer"]["notebook"], as_version=4)
    assert "lambda text: 0" not in graded.cells[1].source


# ---------------------------------------------------------------------------------------------
# Every real chapter: the instructor's solutions score full marks, the untouched release zero, and a
# copycat zero. A copycat solves each autograded exercise by calling the reference (the package's
# function, the chapter's printed copy, torch's version), or by pasting the chapter's code for the
# printed case when the exercise asks for a variant. Each entry: (the solution cell a copycat
# hands in, a fragment of the message its test must fail with, or None when any failure will do).
# "not available" is lmbook.grading.without's message: the visible tests passed and the hidden
# tests, which take the reference away, caught it.

BLOCKED = "is not available in this test"
COPYCATS: dict[str, dict[str, tuple[str, str | None]]] = {
    "01_ngram": {
        "answer_abs_discount_prob": ("""\
def abs_discount_prob(counts, history, token, d, vocab_size):
    seen = {w: c for (h, w), c in counts.items() if h == history}
    total = sum(seen.values())
    if total == 0:
        return 1 / vocab_size
    return float(ngram.kneser_ney(seen.get(token, 0), total, len(seen), 1 / vocab_size, d))""", BLOCKED),
        "answer_perplexity": ("""\
def perplexity(probs):
    return math.inf if 0 in probs else math.prod(probs) ** (-1 / len(probs))  # the printed formula""", None),
        "answer_continuation_probs": ("""\
def continuation_probs(seqs, v):  # the unigram continuation of section 1.4, v ignored
    bigram_types = set()
    for seq in seqs:
        padded = ["<s>"] + list(seq) + ["</s>"]
        bigram_types.update(zip(padded, padded[1:]))
    preceders = Counter(w for _, w in bigram_types)
    return {w: n / len(bigram_types) for w, n in preceders.items()}""", None),
    },
    "02_neural": {
        "answer_trigram_logits": ("""\
def trigram_logits(prev2, prev1, W):  # the printed bigram
    return F.one_hot(prev1, W.shape[1]).to(W.dtype) @ W""", None),
        "answer_smoothed_ce_grad": ("""\
def smoothed_ce_grad(logits, targets, eps):
    z = logits.detach().clone().requires_grad_()
    (grad,) = torch.autograd.grad(F.cross_entropy(z, targets, label_smoothing=eps), z)
    return grad""", BLOCKED),
        "answer_rms_norm": ("""\
def rms_norm(x, gamma, eps=1e-6):
    return F.rms_norm(x, (x.shape[-1],), gamma, eps=eps)""", BLOCKED),
    },
    "03_rnn": {
        "answer_gru_step_original": ("""\
def gru_step_original(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    return gru_cell(x @ weight_ih.T + bias_ih, h, weight_hh, bias_hh)  # the printed cell""", BLOCKED),
        "answer_clip_global_norm": ("""\
def clip_global_norm(parameters, max_norm):
    return torch.nn.utils.clip_grad_norm_(parameters, max_norm).item()""", BLOCKED),
        "answer_lstm_peephole_step": ("""\
def lstm_peephole_step(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh, peephole):
    return lstm_cell(x @ weight_ih.T + bias_ih, (h, c), weight_hh, bias_hh)  # the printed cell""", BLOCKED),
    },
    "04_attention": {
        "answer_masked_multihead_attention": ("""\
def masked_multihead_attention(x, W_q, W_k, W_v, W_o, n_heads, mask):
    B, T, d = x.shape
    q, k, v = ((x @ W).view(B, T, n_heads, d // n_heads).transpose(1, 2) for W in (W_q, W_k, W_v))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(B, T, d) @ W_o""",
                                              BLOCKED),
        "answer_offset_rotation": ("""\
def offset_rotation(k, d):  # fit M to the package's encodings
    pe = sinusoidal_positions(k + 4 * d, d).double()
    return torch.linalg.lstsq(pe[: 4 * d], pe[k:]).solution.float()""", BLOCKED),
        "answer_dot_attention": ("""\
def dot_attention(query, keys, mask):
    c, w = scaled_dot_product_attention(query[:, None], keys, keys, attn_mask=mask[:, None], scale=1.0,
                                        return_weights=True)
    return c[:, 0], w[:, 0]""", BLOCKED),
    },
    "05_transformer": {
        "answer_nanogpt_decay_split": ("""\
def nanogpt_decay_split(model):
    return decay_split(model)  # the book's rule, not nanoGPT's""", None),
        "answer_gpt_param_count": ("""\
def gpt_param_count(config, tied=True, learned_positions=True):
    V, T, d = config.vocab_size, config.block_size, config.n_embd
    return param_count(config) + (0 if tied else V * d) - (0 if learned_positions else T * d)""", BLOCKED),
        "answer_top_p_logits": ("""\
def top_p_logits(logits, p):  # the printed top-k, with k = 2
    kth = torch.topk(logits, 2, dim=-1).values[:, -1:]
    return logits.masked_fill(logits < kth, -math.inf)""", None),
    },
    "06_tokenization": {
        "answer_expand_to_bytes": ("""\
def expand_to_bytes(ids, merges):
    return list(Tokenizer(None, {p: 256 + k for k, p in enumerate(merges)}).decode(ids).encode("utf-8"))""",
                                   BLOCKED),
        "answer_wordpiece_train": ("""\
def wordpiece_train(words, num_merges):
    return train_merges_naive(words, num_merges)  # the printed BPE trainer""", None),
        "answer_bpe_encode": ("""\
def bpe_encode(text, merges):
    return Tokenizer(None, {p: 256 + k for k, p in enumerate(merges)}).encode(text)""", BLOCKED),
    },
    "07_gpu_training": {
        "answer_wsd_lr": ("""\
def wsd_lr(step, lr, min_lr, warmup_steps, decay_steps, max_steps):
    return lr_schedule(step, lr=lr, min_lr=min_lr, warmup_steps=warmup_steps, max_steps=max_steps)""", None),
        "answer_stochastic_bfloat16": ("""\
def stochastic_bfloat16(x, generator):
    return round_mantissa(x, 7)  # the printed rounding to nearest""", None),
        "answer_mfu": ("""\
def mfu(tokens_per_second, config, peak_tflops):
    return tokens_per_second * flops_per_token(config) / (peak_tflops * 1e12)


print(f"A100 constant: {mfu(150_000, gpt2_small, 312):.1%}; true H100 MFU: {mfu(150_000, gpt2_small, 989.4):.1%}")""",
                       BLOCKED),
    },
    "08_generation": {
        "answer_typical_filter": ("""\
def typical_filter(logits, mass):
    from transformers import TypicalLogitsWarper
    return TypicalLogitsWarper(mass=mass)(None, logits)""", BLOCKED),
        "answer_bits_per_byte_from_nats": ("""\
def bits_per_byte_from_nats(nats_per_char, text):
    return evaluate.bits_per_byte(torch.full((len(text),), -nats_per_char, dtype=torch.float64), text)""", BLOCKED),
    },
    "09_modern": {
        "answer_rows_to_rotate_half": ("""\
def rows_to_rotate_half(w, n_head):
    hs = w.shape[0] // n_head
    return w.view(n_head, hs, -1)[:, interleaved_to_half(hs)].reshape(w.shape)  # the printed permutation""",
                                       BLOCKED),
        "answer_kv_cache_gib": ("""\
def kv_cache_gib(hf_config, seq_len, batch=1, bytes_per_value=2):
    heads = hf_config["num_attention_heads"]
    kv = hf_config.get("num_key_value_heads") or heads
    head_dim = hf_config.get("head_dim") or hf_config["hidden_size"] // heads
    return kv_cache_bytes(hf_config["num_hidden_layers"], kv, head_dim, seq_len, batch, bytes_per_value) / 2**30""",
                                BLOCKED),
        "answer_cheapest_run": ("""\
def cheapest_run(E, A, B, alpha, beta, target):
    law = scaling.ScalingLaw(E=E, A=A, B=B, alpha=alpha, beta=beta)
    low, high = 1.0, 1e40  # the compute at which the compute-optimal run reaches the target, by bisection
    for _ in range(300):
        C = math.sqrt(low * high)
        low, high = (C, high) if law(*compute_optimal(law, C)) > target else (low, C)
    return compute_optimal(law, high)""", BLOCKED),
    },
    "10_adapting": {
        "answer_cdpo_loss": ("""\
def cdpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, epsilon):
    return ((1 - epsilon) * dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta).loss
            + epsilon * dpo_loss(policy_rejected, policy_chosen, ref_rejected, ref_chosen, beta).loss)""", BLOCKED),
        "answer_lora_parameter_count": ("""\
def lora_parameter_count(config, rank, targets):
    model = GPT(config)
    finetune.inject_lora(model, rank, targets=targets)
    return finetune.count_parameters(model)[0]""", BLOCKED),
        "answer_make_sort": ("""\
def make_sort(rng, split):
    digits = instructions.TASKS["reverse"].make(rng, split).key  # the library's held-out strings
    return instructions.Example("sort", f"Sort the digits {digits}.", "".join(sorted(digits)), key=digits)


def check_sort(example, answer):
    return answer.strip() == example.answer""", "multiple of 7"),
    },
    "11_data_and_outlook": {
        "answer_duplicate_ngram_char_fraction": ("""\
def duplicate_ngram_char_fraction(words, n):  # the most frequent n-gram only, from the package
    return corpus.top_ngram_char_fraction(words, n)""", BLOCKED),
        "answer_estimated_exposure": ("""\
def estimated_exposure(secret_logprob, sample_logprobs, space_size):  # the package's rank, scaled up
    ranked = memorization.rank(torch.cat([torch.tensor([secret_logprob], dtype=sample_logprobs.dtype), sample_logprobs]), 0)
    return math.log2(space_size) - math.log2(1 + (ranked - 1) / len(sample_logprobs) * space_size)""", BLOCKED),
    },
}


def copycat_release(course: Path, assignment: str, name: str, stem: str, folder: Path) -> Path:
    """The release with each autograded exercise's solution cell replaced by its copycat."""
    assert stem in COPYCATS, (f"{stem} has no entry in COPYCATS: add, for each of its autograded exercises, "
                              "the solution a copycat would hand in by calling the reference")
    nb = nbformat.read(course / "release" / assignment / name, as_version=4)
    cells = _by_grade_id(nb)
    for grade_id, (source, _) in COPYCATS[stem].items():
        assert grade_id in cells and cells[grade_id].metadata.nbgrader.solution, \
            f"{stem}: no solution cell {grade_id} (the exercise changed? update COPYCATS)"
        cells[grade_id].source = source
    folder.mkdir(exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder / name


def check_copycat_scores_zero(result: dict, stem: str) -> None:
    expected = {fragment for _, fragment in COPYCATS[stem].values()}
    assert result["max_score"] > 0
    passed = [g for g, t in result["tests"].items() if t["score"] > 0]
    assert not passed, f"{stem}: these tests give points to a copycat that calls the reference: {passed}"
    for grade_id, test in result["tests"].items():
        assert "NotImplementedError" not in test["message"], \
            f"{stem}: test {grade_id} has no copycat in COPYCATS (it failed on an unsolved stub)"
    if BLOCKED in expected:  # the hidden tests' take-away of the references is what caught them
        assert any(BLOCKED in t["message"] for t in result["tests"].values()), result["tests"]


INSTRUCTOR_CHECK = "# instructor check: "


def with_instructor_checks(release: Path, source: Path, folder: Path) -> Path:
    """The untouched release, with one cell added after each autograded test cell (students may add
    cells; the autograder runs them and grades only its own): the instructor's solution cells of that
    exercise, then the test cell with its hidden tests. The graded cells see the unsolved release;
    the added cells show, in the same run, that the instructor's solutions pass every test."""
    nb, original = nbformat.read(release, as_version=4), _by_grade_id(nbformat.read(source, as_version=4))
    cells, solutions = [], []
    for cell in nb.cells:
        cells.append(cell)
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            solutions.append(original[meta["grade_id"]].source)
        elif meta.get("grade"):
            test = original[meta["grade_id"]].source
            cells.append(nbformat.v4.new_code_cell(
                f"{INSTRUCTOR_CHECK}{meta['grade_id']}\n" + "\n\n".join(solutions + [test])
                + f"\nprint('passed: {meta['grade_id']}')"))
            solutions = []
    nb.cells = cells
    folder.mkdir(exist_ok=True)
    nbformat.write(nb, folder / release.name)
    return folder / release.name


def check_instructor_passes(graded: Path, test_ids: list[str]) -> None:
    nb = nbformat.read(graded, as_version=4)
    checks = {c.source.splitlines()[0][len(INSTRUCTOR_CHECK):]: c for c in nb.cells
              if c.cell_type == "code" and c.source.startswith(INSTRUCTOR_CHECK)}
    assert sorted(checks) == sorted(test_ids), f"instructor checks ran for {sorted(checks)}, tests are {sorted(test_ids)}"
    for grade_id, cell in checks.items():
        errors = [f"{o.ename}: {o.evalue}" for o in cell.outputs if o.output_type == "error"]
        assert not errors, f"the instructor's solution fails test {grade_id}: {errors}"
        assert any(f"passed: {grade_id}" in o.get("text", "") for o in cell.outputs), cell.outputs


def check_chapter_body_runs(graded: Path) -> None:
    """Every cell before the exercises runs without an error in the course folder (no path that only
    works next to the chapter, no state that only the book's kernel had)."""
    nb = nbformat.read(graded, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown" and cell.source.startswith("## Exercises"):
            break
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        assert not errors, f"{graded.name} cell {i + 1} failed under the autograder: {errors[0].ename}: {errors[0].evalue}"


@pytest.mark.parametrize("py", CHAPTER_SOURCES, ids=lambda p: p.stem)
def test_chapter_assignment(py, tmp_path):
    """Built from the chapter's .py (the release clears outputs anyway), so a chapter whose notebook
    waits for its next run is graded as its source says. Two submissions, one `nbgrader autograde`,
    so the chapter runs twice: the untouched release, which scores zero with messages a student can
    act on and carries the instructor checks (the instructor's solutions pass every test, hidden
    ones included, in the same run), and a copycat, who scores zero. (The fixture chapter's tests
    show that nbgrader gives full marks to solutions that pass; `make test` also runs every chapter,
    solutions and hidden tests included, under nbval.)"""
    chapter = tmp_path / py.with_suffix(".ipynb").name
    nbformat.write(notebooks.build(py), chapter)
    course = tmp_path / "course"
    [release] = assignments.build([chapter], course)
    assignment, name = assignments.assignment_name(chapter), chapter.name
    source = course / "source" / assignment / name
    check_release(source, release)
    assignments.submit(course, assignment, "blank", with_instructor_checks(release, source, tmp_path / "blank"))
    assignments.submit(course, assignment, "copycat", copycat_release(course, assignment, name, py.stem, tmp_path / "copycat"))
    assignments.nbgrader(course, "autograde", assignment, "--create", "--force")
    graded = {s: assignments.results(course, assignment, s, name) for s in ("blank", "copycat")}
    check_zero_with_messages(graded["blank"])
    check_instructor_passes(graded["blank"]["notebook"], list(graded["blank"]["tests"]))
    check_copycat_scores_zero(graded["copycat"], py.stem)
    for result in graded.values():
        check_chapter_body_runs(result["notebook"])


def test_every_chapter_has_copycats():
    missing = [p.stem for p in CHAPTER_SOURCES if p.stem not in COPYCATS]
    assert not missing, f"chapters without copycats in COPYCATS (see the comment above it): {missing}"
    assert not (stale := sorted(set(COPYCATS) - {p.stem for p in CHAPTER_SOURCES})), f"no such chapters: {stale}"
