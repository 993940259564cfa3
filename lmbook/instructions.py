"""Instructions and answers made by code, each task with its own checker (chapter 10).

Instruction tuning needs examples of instructions and the answers a model should give; preference
tuning needs, for each instruction, a better and a worse answer. Here both come from code the book
already has and can check, so every example is correct by construction and every answer a model
writes can be graded without a judge:

- ``dates``: rewrite a date written by a person (chapter 4's formats, `lmbook.dates`) as ISO 8601;
- ``reverse``: reverse a string of digits (chapter 4's bottleneck task);
- ``add``: add two numbers below 100;
- ``continue``: continue a line of Shakespeare, given its first words, in the style of Shakespeare;
- ``starts_with``: write a line of verse that starts with a given word.

The first three have one right answer (exact match). The last two are open: the checker accepts any
single line of at least three words, each of them a word of Shakespeare's training text, that starts
as asked; the training answers are real lines of the text. Each `Task` makes an `Example` from a
random generator and a split, checks an answer (``task.check(example, answer)``), and makes a
plausible wrong answer for preference pairs (``task.corrupt(example, rng)``): a date with its day
and month swapped or off by one, digits left in order or with two of them swapped, a sum off by one
or by ten, a line with the letters inside each word shuffled or one that starts with the wrong word.

`make_splits` returns held-out examples whose *payload* never occurs in training: the test dates
are calendar days no training example uses, the test digit strings and pairs of numbers are not
training ones, and the test lines come from Shakespeare's validation text. Everything is
deterministic given the seed.

>>> ex = TASKS["reverse"].make(random.Random(0), "train")
>>> ex.prompt, ex.answer, TASKS["reverse"].check(ex, ex.answer)  # doctest: +SKIP
('Reverse the digits 6655.', '5566', True)
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from lmbook import dates

SPLITS = ("train", "test")


@dataclass(frozen=True)
class Example:
    """One instruction: the task it comes from, the prompt, a correct answer, and what the checker
    needs (`key`: the payload that must not repeat across splits, e.g. the date or the digits)."""

    task: str
    prompt: str
    answer: str
    key: str = field(default="", compare=False)


@dataclass(frozen=True)
class Task:
    """A task: ``make(rng, split) -> Example``, ``check(example, answer) -> bool`` and
    ``corrupt(example, rng) -> a wrong answer`` that the checker rejects."""

    name: str
    make: Callable[[random.Random, str], Example]
    check: Callable[[Example, str], bool]
    corrupt: Callable[[Example, random.Random], str]
    exact: bool  # one right answer (exact match), or any answer the checker accepts


# ---- dates -------------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _day_pools(seed: int = 0) -> dict[str, list]:
    """Calendar days for training and for test, disjoint (the test days are 10% of all days)."""
    days = dates.all_dates()
    random.Random(seed).shuffle(days)
    k = len(days) // 10
    return {"test": days[:k], "train": days[k:]}


def _make_date(rng: random.Random, split: str) -> Example:
    day = rng.choice(_day_pools()[split])
    human, iso = dates.random_example(day, rng)
    phrasing = rng.choice(["Write {} as YYYY-MM-DD.", "Normalise the date {}."])
    return Example("dates", phrasing.format(human), iso, key=iso)


def _check_exact(example: Example, answer: str) -> bool:
    return answer.strip() == example.answer


def _corrupt_date(example: Example, rng: random.Random) -> str:
    y, m, d = (int(p) for p in example.answer.split("-"))
    options = []
    if d <= 12 and d != m:
        options.append(f"{y:04d}-{d:02d}-{m:02d}")                 # day and month swapped
    options.append(f"{y:04d}-{m:02d}-{d % 28 + 1:02d}")             # the wrong day
    options.append(f"{y + rng.choice([-1, 1]):04d}-{m:02d}-{d:02d}")  # the wrong year
    return rng.choice(options)


# ---- digits and sums ---------------------------------------------------------------------------------------


def _in_split(key: str, split: str) -> bool:
    """A fixed tenth of all keys is held out for test (by a hash that does not change between runs)."""
    h = 0
    for ch in key:
        h = (h * 131 + ord(ch)) % 1_000_003
    return (h % 10 == 0) == (split == "test")


def _draw(rng: random.Random, split: str, draw: Callable[[], str]) -> str:
    while True:
        key = draw()
        if _in_split(key, split):
            return key


def _make_reverse(rng: random.Random, split: str) -> Example:
    digits = _draw(rng, split, lambda: "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 8))))
    phrasing = rng.choice(["Reverse the digits {}.", "Write {} backwards."])
    return Example("reverse", phrasing.format(digits), digits[::-1], key=digits)


def _corrupt_reverse(example: Example, rng: random.Random) -> str:
    digits = example.key
    wrong = [digits]                                                 # not reversed at all
    rev = list(example.answer)
    i = rng.randrange(len(rev) - 1)
    rev[i], rev[i + 1] = rev[i + 1], rev[i]                          # two neighbours swapped
    wrong.append("".join(rev))
    wrong = [w for w in wrong if w != example.answer] or [example.answer[1:]]  # a palindrome: drop a digit
    return rng.choice(wrong)


def _make_add(rng: random.Random, split: str) -> Example:
    key = _draw(rng, split, lambda: f"{rng.randint(0, 99)}+{rng.randint(0, 99)}")
    a, b = key.split("+")
    phrasing = rng.choice(["What is {} plus {}?", "Add {} and {}."])
    return Example("add", phrasing.format(a, b), str(int(a) + int(b)), key=key)


def _corrupt_add(example: Example, rng: random.Random) -> str:
    total = int(example.answer)
    options = [total + 1, total + 10, total - 10 if total >= 10 else total + 2, max(total - 1, 0) if total else 2]
    return str(rng.choice([o for o in options if o != total]))


# ---- lines in the style of Shakespeare ---------------------------------------------------------------------

WORD = re.compile(r"[A-Za-z']+")


@lru_cache(maxsize=None)
def shakespeare_lines() -> dict[str, list[str]]:
    """Lines of verse or prose from tinyshakespeare (no speaker names, no empty lines), 12 to 50
    characters with at least three words, each of them a word of the training text: {'train': from
    nanoGPT's training split, 'test': from its validation split, less the lines that occur in both}."""
    from lmbook.data import shakespeare_split

    out = {}
    for split, text in zip(SPLITS, shakespeare_split()):
        out[split] = [line for line in text.split("\n")
                      if 12 <= len(line) <= 50 and not line.endswith(":") and _is_verse_line(line, min_words=3)]
    seen = set(out["train"])
    out["test"] = [line for line in out["test"] if line not in seen]
    return out


@lru_cache(maxsize=None)
def shakespeare_words() -> frozenset[str]:
    """Every word (lower case) of tinyshakespeare's training split: what the style checkers accept."""
    from lmbook.data import shakespeare_split

    return frozenset(w.lower() for w in WORD.findall(shakespeare_split()[0]))


@lru_cache(maxsize=None)
def _first_words() -> tuple[str, ...]:
    """The words that start at least 30 training lines, without trailing punctuation."""
    counts: dict[str, int] = {}
    for line in shakespeare_lines()["train"]:
        word = line.split()[0]
        if WORD.fullmatch(word):
            counts[word] = counts.get(word, 0) + 1
    return tuple(sorted(w for w, c in counts.items() if c >= 30))


def _is_verse_line(text: str, min_words: int) -> bool:
    """One line, at most 80 characters, at least `min_words` words, every one of them Shakespeare's."""
    words = WORD.findall(text)
    return ("\n" not in text and 0 < len(text.strip()) <= 80 and len(words) >= min_words
            and all(w.lower() in shakespeare_words() for w in words))


def _make_continue(rng: random.Random, split: str) -> Example:
    line = rng.choice(shakespeare_lines()[split])
    words = line.split(" ")
    k = rng.randint(1, max(1, min(3, len(words) - 2)))
    start, rest = " ".join(words[:k]), " ".join(words[k:])
    return Example("continue", f"Continue in the style of Shakespeare: {start}", rest, key=line)


def _check_continue(example: Example, answer: str) -> bool:
    return _is_verse_line(answer, min_words=2) and answer.strip() != ""


def _scramble(text: str, rng: random.Random) -> str:
    """The words of `text` with the letters inside each word shuffled: no longer Shakespeare's words."""
    def shuffle_word(m):
        letters = list(m.group(0).lower())
        for _ in range(10):
            rng.shuffle(letters)
            if "".join(letters).lower() not in shakespeare_words():
                break
        return "".join(letters)

    out = WORD.sub(shuffle_word, text)
    return out if not _is_verse_line(out, 1) else out + " zq"


def _corrupt_continue(example: Example, rng: random.Random) -> str:
    return _scramble(example.answer, rng)


def _make_starts_with(rng: random.Random, split: str) -> Example:
    word = rng.choice(_first_words())
    lines = [line for line in shakespeare_lines()[split] if line.split()[0] == word]
    line = rng.choice(lines) if lines else rng.choice([l for l in shakespeare_lines()["train"] if l.split()[0] == word])
    return Example("starts_with", f"Write a line that starts with '{word}'.", line, key=word)


def _starts_with_word(text: str, word: str) -> bool:
    return text.startswith(word) and (len(text) == len(word) or not text[len(word)].isalpha()
                                      and text[len(word)] != "'")


def _check_starts_with(example: Example, answer: str) -> bool:
    return _starts_with_word(answer, example.key) and _is_verse_line(answer, min_words=3)


def _corrupt_starts_with(example: Example, rng: random.Random) -> str:
    others = [line for line in shakespeare_lines()["train"] if not _starts_with_word(line, example.key)]
    return rng.choice(others)


TASKS: dict[str, Task] = {t.name: t for t in [
    Task("dates", _make_date, _check_exact, _corrupt_date, exact=True),
    Task("reverse", _make_reverse, _check_exact, _corrupt_reverse, exact=True),
    Task("add", _make_add, _check_exact, _corrupt_add, exact=True),
    Task("continue", _make_continue, _check_continue, _corrupt_continue, exact=False),
    Task("starts_with", _make_starts_with, _check_starts_with, _corrupt_starts_with, exact=False),
]}


def make_examples(task: str, n: int, split: str, seed: int = 0) -> list[Example]:
    """`n` examples of `task` from `split` ('train' or 'test'), deterministic given `seed`."""
    _check_task(task)
    _check_count("n", n)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = random.Random(f"{task}/{split}/{seed}")
    return [TASKS[task].make(rng, split) for _ in range(n)]


def make_splits(sizes: dict[str, tuple[int, int]], seed: int = 0) -> dict[str, list[Example]]:
    """{'train': [...], 'test': [...]}: for each task, ``sizes[task] = (n_train, n_test)`` examples;
    training examples are shuffled together across tasks, test examples stay grouped by task."""
    if not isinstance(sizes, dict) or not sizes:
        raise ValueError(f"sizes must be a non-empty dict {{task: (n_train, n_test)}}, got {sizes!r}")
    train, test = [], []
    for task, counts in sizes.items():
        if not isinstance(counts, (tuple, list)) or len(counts) != 2:
            raise ValueError(f"sizes[{task!r}] must be (n_train, n_test), got {counts!r}")
        train += make_examples(task, counts[0], "train", seed)
        test += make_examples(task, counts[1], "test", seed)
    random.Random(seed).shuffle(train)
    return {"train": train, "test": test}


def preference_pairs(examples: list[Example], seed: int = 0,
                     answers: list[str] | None = None) -> list[tuple[Example, str, str]]:
    """(example, chosen, rejected) for each example: its correct answer, and a wrong one its task makes.

    With `answers` (a model's own answers to the examples, one each), an answer that its checker
    rejects is the rejected answer of its pair, in place of the task's corruption: the mistakes a
    model actually makes are the negatives that teach it most (on-policy pairs). An empty or
    right answer leaves the corruption in place."""
    if answers is not None and len(answers) != len(examples):
        raise ValueError(f"answers must hold one answer per example: {len(answers)} answers for {len(examples)} examples")
    rng = random.Random(seed)
    pairs = []
    for i, ex in enumerate(examples):
        rejected = TASKS[ex.task].corrupt(ex, rng)                  # drawn for every example: the same rng stream
        if answers is not None and answers[i].strip() and not check(ex, answers[i]):
            rejected = answers[i]
        pairs.append((ex, ex.answer, rejected))
    return pairs


def check(example: Example, answer: str) -> bool:
    """Whether `answer` is a right answer to `example`, by its task's checker."""
    if not isinstance(example, Example):
        raise TypeError(f"example must be an instructions.Example, got {type(example).__name__}")
    _check_task(example.task)
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a str, got {type(answer).__name__}")
    return TASKS[example.task].check(example, answer)


def _check_task(task) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; the tasks are {sorted(TASKS)}")


def _check_count(name: str, n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"{name} must be an int >= 0, got {n!r}")
