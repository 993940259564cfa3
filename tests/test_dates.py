"""lmbook.dates: every format writes the date it was given (checked by the standard library's
parser where it can read the format), ordinals are right, splits are deterministic and disjoint."""

import datetime
import re

import pytest

from lmbook import dates

# datetime.strptime formats that read what each FORMATS entry writes (C locale, English names);
# ordinals have their suffix removed first. mdy_slash_short's %y pivots at 1969, not 1950: tested apart.
STRPTIME = {"compact": "%Y%m%d", "dmy_dots": "%d.%m.%Y", "mdy_slash": "%m/%d/%Y", "d_mon_y": "%d %b %Y",
            "mon_d_y": "%b %d, %Y", "d_month_y": "%d %B %Y", "month_d_y": "%B %d, %Y", "ordinal_of": "%d of %B %Y",
            "month_the_ordinal": "%B the %d, %Y", "weekday_short": "%a, %d %b %Y", "weekday_long": "%A, %B %d, %Y"}
SAMPLE = [datetime.date(1950, 1, 1), datetime.date(1968, 2, 29), datetime.date(1999, 3, 3),
          datetime.date(2000, 12, 31), datetime.date(2023, 11, 22), datetime.date(2049, 12, 31)]


@pytest.mark.parametrize("fmt", sorted(STRPTIME))
@pytest.mark.parametrize("case", ["title", "lower", "upper"])
def test_formats_parse_back_with_strptime(fmt, case):
    for d in SAMPLE:
        text = dates.format_date(d, fmt, case)
        text = re.sub(r"(\d+)(st|nd|rd|th)\b", r"\1", text, flags=re.IGNORECASE)
        assert datetime.datetime.strptime(text, STRPTIME[fmt]).date() == d, (fmt, text)


def test_two_digit_years_pivot_at_1950():
    assert dates.format_date(datetime.date(1950, 7, 4), "mdy_slash_short") == "07/04/50"
    assert dates.format_date(datetime.date(2049, 7, 4), "mdy_slash_short") == "07/04/49"
    for d in SAMPLE:
        month, day, yy = map(int, dates.format_date(d, "mdy_slash_short").split("/"))
        assert datetime.date(1900 + yy if yy >= 50 else 2000 + yy, month, day) == d


def test_day_words_and_ordinals():
    words = {1: "first", 2: "second", 3: "third", 11: "eleventh", 12: "twelfth", 20: "twentieth",
             21: "twenty-first", 22: "twenty-second", 30: "thirtieth", 31: "thirty-first"}
    for n, w in words.items():
        assert dates.ordinal_words(n) == w
    assert [dates.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st"]
    assert dates.format_date(datetime.date(1999, 3, 3), "weekday_words") == "Wednesday the third of March, 1999"
    assert dates.format_date(datetime.date(2031, 5, 2), "words", "lower") == "the second of may, 2031"


def test_every_input_means_one_date():
    """No text is written for two different days, in any format and case."""
    seen: dict[str, datetime.date] = {}
    for d in dates.all_dates()[::7]:
        for fmt in dates.FORMATS:
            for case in ("title", "lower", "upper"):
                text = dates.format_date(d, fmt, case)
                assert seen.setdefault(text, d) == d, text


def test_splits_are_deterministic_disjoint_and_cover_the_formats():
    a = dates.make_splits(3000, 500, 500, seed=1)
    assert a == dates.make_splits(3000, 500, 500, seed=1)
    assert a["train"] != dates.make_splits(3000, 500, 500, seed=2)["train"]
    assert [len(a[k]) for k in ("train", "val", "test")] == [3000, 500, 500]
    days = {k: {iso for _, iso in a[k]} for k in a}
    assert not days["train"] & days["test"] and not days["train"] & days["val"] and not days["val"] & days["test"]
    texts = {k: {s for s, _ in a[k]} for k in a}
    assert not texts["train"] & texts["test"]
    for text, iso in a["train"][:200]:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", iso) and dates.FIRST_DAY <= datetime.date.fromisoformat(iso) <= dates.LAST_DAY
    lengths = [len(s) for s, _ in a["train"]]
    assert min(lengths) == 8 and max(lengths) > 40  # "19990303" … "Wednesday the twenty-third of September, 1999"


def test_bad_input():
    with pytest.raises(ValueError, match="unknown date format 'iso'"):
        dates.format_date(datetime.date(2000, 1, 1), "iso")
    with pytest.raises(ValueError, match="dates run from 1950-01-01 to 2049-12-31"):
        dates.format_date(datetime.date(2050, 1, 1), "compact")
    with pytest.raises(ValueError, match="case must be"):
        dates.format_date(datetime.date(2000, 1, 1), "words", "shout")
    with pytest.raises(ValueError, match="n_test must be an int >= 0"):
        dates.make_splits(10, 10, -1)
    with pytest.raises(ValueError, match="held_out"):
        dates.make_splits(10, 10, 10, held_out=0.6)
