"""How many of the matching calls the dashboard renders: ``ROWS_STEP`` at first, as many
more on each "Show more", never more than ``ROWS_MAX``.

Rendering is most of a dashboard request's time (about 0.2 ms a row) and every event
refreshes the rows of every supervisor's page, so the first render and each refresh
carry only the rows someone asked to see. A refresh asks for as many rows as its page
shows (``?rows=N``, dashboard.js): it renders the first N again, so a call that started
or ended meanwhile moves the others without leaving a gap or a row twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest

ROWS_STEP = 50
ROWS_MAX = 200


def rows_asked(request: HttpRequest) -> int:
    """``?rows=N`` within ``ROWS_STEP``..``ROWS_MAX`` (``ROWS_STEP`` without it)."""
    try:
        asked = int(request.GET.get("rows", ""))
    except ValueError:
        return ROWS_STEP
    return min(max(asked, ROWS_STEP), ROWS_MAX)


@dataclass(frozen=True)
class RowsWindow:
    """The first ``asked`` of ``matching`` calls."""

    asked: int
    matching: int

    @property
    def shown(self) -> int:
        return min(self.asked, self.matching)

    @property
    def more(self) -> int:
        """How many rows the next "Show more" adds (0: every call that may be is shown)."""
        return max(0, min(self.asked + ROWS_STEP, self.matching, ROWS_MAX) - self.asked)

    @property
    def next_asked(self) -> int:
        return self.asked + self.more

    @property
    def capped(self) -> bool:
        """More calls match than the dashboard ever renders: filters narrow them."""
        return self.matching > ROWS_MAX and self.more == 0
