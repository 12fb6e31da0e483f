"""The status page's cron expressions in words; anything unusual stays the expression."""

from __future__ import annotations

import pytest

from dataflow.runtime._web._words import cron_in_words


@pytest.mark.parametrize(
    ("expression", "words"),
    [
        ("* * * * *", "every minute"),
        ("*/15 * * * *", "every 15 minutes"),
        ("*/3 * * * * *", "every 3 seconds"),
        ("* * * * * *", "every second"),
        ("5 * * * *", "every hour at :05"),
        ("30 2 * * *", "at 02:30"),
        ("0 */6 * * *", "every 6 hours at :00"),
        ("0 9 * * 1-5", "at 09:00 on weekdays"),
        ("0 9 * * 1,3", "at 09:00 on Mon, Wed"),
        ("0 0 1 * *", "at 00:00 on day 1 of the month"),
        ("0 0 1 1 *", "at 00:00 on Jan 1"),
        ("@hourly", "every hour at :00"),
        ("0 9 L * *", "cron 0 9 L * *"),
        ("1-5 * * * *", "cron 1-5 * * * *"),
        ("0 9 * * MON", "cron 0 9 * * MON"),
    ],
)
def test_common_schedules_read_as_words(expression: str, words: str) -> None:
    assert cron_in_words(expression) == words
