"""A translation task generated in code: dates written the ways people write them -> ISO 8601
(chapter 4's sequence-to-sequence task; no download needed).

``"3rd of March 1999"``, ``"03/03/99"``, ``"Wednesday, March 3, 1999"``, ``"19990303"``, … all
become ``"1999-03-03"``. Each of the `FORMATS` is a small function of the date (and, for the
formats that spell out months or weekdays, a random choice of lower, title or upper case).

The conventions make every input mean exactly one date, so a perfect model is possible:
slashes are American (month/day/year), dots European (day.month.year), and dates run from
1950-01-01 to 2049-12-31 so that a two-digit year is unambiguous (50..99 -> 19xx, 00..49 -> 20xx).

`make_splits` draws training, validation and test examples from *disjoint sets of calendar days*:
a test date is never seen in training in any format, so the test set measures generalisation,
not memory. Everything is deterministic given the seed.

>>> format_date(datetime.date(1999, 3, 3), "ordinal_of")
'3rd of March 1999'
>>> make_splits(2, 1, 1, seed=0)["train"]  # doctest: +SKIP
[('12.8.1983', '1983-08-12'), ('may the 2nd, 2031', '2031-05-02')]
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Callable

FIRST_DAY, LAST_DAY = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_UNITS = ["", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth",
          "eleventh", "twelfth", "thirteenth", "fourteenth", "fifteenth", "sixteenth", "seventeenth",
          "eighteenth", "nineteenth"]


def ordinal(n: int) -> str:
    """1 -> '1st', 2 -> '2nd', 3 -> '3rd', 11 -> '11th', 22 -> '22nd' (and 0 -> '0th'); n is an int >= 0."""
    _check_day(n, "n", low=0)
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def ordinal_words(n: int) -> str:
    """The day of the month in words: 3 -> 'third', 20 -> 'twentieth', 31 -> 'thirty-first'."""
    _check_day(n, "n", low=1, high=31)
    if n < 20:
        return _UNITS[n]
    tens = {2: "twent", 3: "thirt"}[n // 10]
    return f"{tens}ieth" if n % 10 == 0 else f"{tens}y-{_UNITS[n % 10]}"


def _month(d: datetime.date) -> str:
    return MONTHS[d.month - 1]


def _weekday(d: datetime.date) -> str:
    return WEEKDAYS[d.weekday()]


# Each format: date -> text. Formats whose name contains words get a random case (see format_date).
FORMATS: dict[str, Callable[[datetime.date], str]] = {
    "compact": lambda d: f"{d.year}{d.month:02d}{d.day:02d}",  # 19990303
    "dmy_dots": lambda d: f"{d.day}.{d.month}.{d.year}",  # 3.3.1999
    "mdy_slash": lambda d: f"{d.month}/{d.day}/{d.year}",  # 3/3/1999
    "mdy_slash_short": lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}",  # 03/03/99
    "d_mon_y": lambda d: f"{d.day} {_month(d)[:3]} {d.year}",  # 3 Mar 1999
    "mon_d_y": lambda d: f"{_month(d)[:3]} {d.day}, {d.year}",  # Mar 3, 1999
    "d_month_y": lambda d: f"{d.day} {_month(d)} {d.year}",  # 3 March 1999
    "month_d_y": lambda d: f"{_month(d)} {d.day}, {d.year}",  # March 3, 1999
    "ordinal_of": lambda d: f"{ordinal(d.day)} of {_month(d)} {d.year}",  # 3rd of March 1999
    "month_the_ordinal": lambda d: f"{_month(d)} the {ordinal(d.day)}, {d.year}",  # March the 3rd, 1999
    "weekday_short": lambda d: f"{_weekday(d)[:3]}, {d.day} {_month(d)[:3]} {d.year}",  # Wed, 3 Mar 1999
    "weekday_long": lambda d: f"{_weekday(d)}, {_month(d)} {d.day}, {d.year}",  # Wednesday, March 3, 1999
    "words": lambda d: f"the {ordinal_words(d.day)} of {_month(d)}, {d.year}",  # the third of March, 1999
    "weekday_words": lambda d: f"{_weekday(d)} the {ordinal_words(d.day)} of {_month(d)}, {d.year}",
}
NUMERIC_FORMATS = ("compact", "dmy_dots", "mdy_slash", "mdy_slash_short")
CASES = (("title", 0.6), ("lower", 0.3), ("upper", 0.1))  # how often each case is drawn


def format_date(d: datetime.date, fmt: str, case: str = "title") -> str:
    """Write date `d` in format `fmt` (a key of FORMATS), in 'title' case (as FORMATS writes it),
    'lower' or 'upper'."""
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise ValueError(f"unknown date format {fmt!r}; choose one of {sorted(FORMATS)}")
    if not isinstance(d, datetime.date) or isinstance(d, datetime.datetime):
        raise TypeError(f"d must be a datetime.date, got {type(d).__name__} {d!r:.40}")
    if not FIRST_DAY <= d <= LAST_DAY:
        raise ValueError(f"dates run from {FIRST_DAY} to {LAST_DAY} (two-digit years stay unambiguous), got {d}")
    text = FORMATS[fmt](d)
    if case == "title":
        return text
    if case in ("lower", "upper"):
        return text.lower() if case == "lower" else text.upper()
    raise ValueError(f"case must be 'title', 'lower' or 'upper', got {case!r}")


def random_example(d: datetime.date, rng: random.Random, formats: tuple[str, ...] = tuple(FORMATS)) -> tuple[str, str]:
    """(human text, ISO text) for date `d` in a format and case drawn from `rng`."""
    if isinstance(formats, str) or not formats or any(f not in FORMATS for f in formats):
        raise ValueError(f"formats must be a non-empty tuple of names from FORMATS ({sorted(FORMATS)}), got {formats!r}")
    fmt = rng.choice(formats)
    case = "title" if fmt in NUMERIC_FORMATS else rng.choices([c for c, _ in CASES], [w for _, w in CASES])[0]
    return format_date(d, fmt, case), d.isoformat()


def all_dates() -> list[datetime.date]:
    """Every day from FIRST_DAY to LAST_DAY (36,525 of them)."""
    return [FIRST_DAY + datetime.timedelta(days=i) for i in range((LAST_DAY - FIRST_DAY).days + 1)]


def make_splits(n_train: int, n_val: int, n_test: int, seed: int = 0,
                held_out: float = 0.1) -> dict[str, list[tuple[str, str]]]:
    """{'train', 'val', 'test'}: lists of (human, ISO) pairs, deterministic given `seed`.

    The calendar days are shuffled and split: a fraction `held_out` of them is reserved for the
    validation set, another `held_out` for the test set, the rest for training; each example then
    draws its day from its split's days and its format uniformly from FORMATS. No day (hence no
    input text, and no target) appears in two splits.
    """
    for name, n in {"n_train": n_train, "n_val": n_val, "n_test": n_test}.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be an int >= 0, got {n!r}")
    if isinstance(held_out, bool) or not isinstance(held_out, (int, float)) or not 0.0 < held_out < 0.5:
        raise ValueError(f"held_out is the fraction of days for each of val and test, in (0, 0.5); got {held_out!r}")
    rng = random.Random(seed)
    days = all_dates()
    rng.shuffle(days)
    k = int(len(days) * held_out)
    pools = {"val": days[:k], "test": days[k:2 * k], "train": days[2 * k:]}
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    return {name: [random_example(rng.choice(pools[name]), rng) for _ in range(sizes[name])]
            for name in ("train", "val", "test")}


def _check_day(n, name: str, low: int, high: int | None = None) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"{name} must be an int, got {type(n).__name__} {n!r}")
    if n < low or (high is not None and n > high):
        allowed = f"{low}..{high}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {allowed}" + (" (a day of the month)" if high == 31 else "")
                         + f", got {n}")
