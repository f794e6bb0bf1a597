"""portal/paging.py: how many rows the dashboard renders, and what Show more adds."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from portal.paging import ROWS_MAX, ROWS_STEP, RowsWindow, rows_asked


@pytest.mark.parametrize(
    ("query", "asked"),
    [
        ("", ROWS_STEP),
        ("?rows=", ROWS_STEP),
        ("?rows=abc", ROWS_STEP),
        ("?rows=1", ROWS_STEP),
        (f"?rows={ROWS_STEP * 2}", ROWS_STEP * 2),
        (f"?rows={ROWS_MAX + 1}", ROWS_MAX),
    ],
)
def test_rows_asked_stays_within_a_step_and_the_most(query: str, asked: int) -> None:
    assert rows_asked(RequestFactory().get("/" + query)) == asked


@pytest.mark.parametrize(
    ("asked", "matching", "shown", "more", "capped"),
    [
        (ROWS_STEP, 0, 0, 0, False),
        (ROWS_STEP, 10, 10, 0, False),
        (ROWS_STEP, ROWS_STEP, ROWS_STEP, 0, False),
        (ROWS_STEP, ROWS_STEP + 1, ROWS_STEP, 1, False),
        (ROWS_STEP, 1000, ROWS_STEP, ROWS_STEP, False),
        (ROWS_STEP * 2, ROWS_STEP + 5, ROWS_STEP + 5, 0, False),  # calls ended since
        (ROWS_MAX - ROWS_STEP, 1000, ROWS_MAX - ROWS_STEP, ROWS_STEP, False),
        (ROWS_MAX, ROWS_MAX, ROWS_MAX, 0, False),
        (ROWS_MAX, 1000, ROWS_MAX, 0, True),
    ],
)
def test_the_window(asked: int, matching: int, shown: int, more: int, capped: bool) -> None:
    window = RowsWindow(asked, matching)
    assert (window.shown, window.more, window.capped) == (shown, more, capped)
    assert window.next_asked == asked + more
