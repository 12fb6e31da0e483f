"""Output for the inspection commands: aligned tables for people, JSON for machines.

A table is plain text with columns separated by two spaces. On a terminal the header is bold and
long cells are cut to keep a row on one line; piped, nothing is cut and no escape codes are
written, so `grep`, `awk` and `column` see exactly the values.

A wrapped table (`list`) instead fits the terminal's width, or 100 columns when there is no
terminal: long cells wrap inside their column, the widest columns giving way first; nothing is
cut, in a terminal or not.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from dataflow._core.redact import redact_text
from dataflow.runtime._describe import json_default, masked

_BOLD, _RESET = "\x1b[1m", "\x1b[0m"
_GAP = "  "
_MIN_CUT = 12  # a cut cell keeps at least this many characters
_COLUMNS = 100  # width of a wrapped table when the output is no terminal
_WORD = re.compile(r"[^\s_=/,]*[_=/,]+|[^\s_=/,]+")  # a word's pieces: `full_`, `document=`


def is_terminal(stream: TextIO) -> bool:
    return stream.isatty() and not os.environ.get("NO_COLOR")


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    stream: TextIO | None = None,
    empty: str = "(none)",
    wrap: bool = False,
) -> None:
    """Print `rows` under `headers`. A cell may hold several lines (`\\n`): the row grows.

    On a terminal the header is bold and the last column is cut to the window's width.
    `wrap`: instead, long cells wrap to fit the width (terminal or not), nothing is cut.
    """
    out = stream or sys.stdout
    if not rows:
        print(empty, file=out)
        return
    tty = is_terminal(out)
    cells = [[redact_text(cell) for cell in row] for row in rows]
    if wrap:
        widths = _fit_widths(headers, cells, shutil.get_terminal_size((_COLUMNS, 24)).columns)
        cells = [[_wrap(cell, w) for cell, w in zip(row, widths, strict=True)] for row in cells]
    grouped = [_row_lines(row) for row in cells]
    spaced = any(len(group) > 1 for group in grouped)  # a blank line keeps tall rows apart
    blank = [[""] * len(headers)] if spaced else []
    lines = [line for group in grouped for line in [*group, *blank]]
    if tty and not wrap:
        lines = _fit(headers, lines, shutil.get_terminal_size().columns)
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers)]
    head = _join(headers, widths)
    print(f"{_BOLD}{head}{_RESET}" if tty else head, file=out)
    for line in lines[:-1] if spaced else lines:
        print(_join(line, widths), file=out)


def print_json(value: Any, *, stream: TextIO | None = None) -> None:
    text = json.dumps(masked(value), indent=2, default=json_default)
    print(text, file=stream or sys.stdout)


def _row_lines(row: Sequence[str]) -> list[list[str]]:
    """One table row as printed lines: cell i's line k is in line k, column i."""
    split = [cell.splitlines() or [""] for cell in row]
    height = max(len(cell) for cell in split)
    return [[cell[k] if k < len(cell) else "" for cell in split] for k in range(height)]


def _join(cells: Sequence[str], widths: Sequence[int]) -> str:
    return _GAP.join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def _fit(headers: Sequence[str], lines: list[list[str]], columns: int) -> list[list[str]]:
    """Cut the last column so each line fits in `columns` characters."""
    fixed = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(headers[:-1])]
    room = max(columns - sum(fixed) - len(_GAP) * len(fixed), _MIN_CUT)
    return [[*line[:-1], cut(line[-1], room)] for line in lines]


def _fit_widths(headers: Sequence[str], rows: list[list[str]], columns: int) -> list[int]:
    """Column widths that fit `columns`: the widest column gives way, one character at a time,
    down to its longest word; still too wide, the widest gives way down to its header's width
    (a table of long headers may stay wider), its long words broken (`_break_word`)."""
    texts = [[row[i] for row in rows] for i in range(len(headers))]
    widths = [
        max(len(h), *(len(line) for text in column for line in text.splitlines()))
        for h, column in zip(headers, texts, strict=True)
    ]
    room = columns - len(_GAP) * (len(headers) - 1)
    splits: list[Callable[[str], list[str]]] = [str.split, lambda _: []]
    for split in splits:
        floor = [
            max([len(h), *(len(word) for text in column for word in split(text))])
            for h, column in zip(headers, texts, strict=True)
        ]
        while sum(widths) > room:
            shrinkable = [i for i, width in enumerate(widths) if width > floor[i]]
            if not shrinkable:
                break
            widths[max(shrinkable, key=lambda i: widths[i])] -= 1
    return widths


def _wrap(cell: str, width: int) -> str:
    """`cell` with each line wrapped to `width` at spaces; a longer word is broken after one
    of `_ = / ,` (`full_document=` / `updateLookup`), or else where the width ends."""
    return "\n".join(piece for line in cell.splitlines() for piece in _wrap_line(line, width))


def _wrap_line(line: str, width: int) -> list[str]:
    lines, current = [], ""
    for word in line.split():
        if current and len(current) + 1 + len(word) <= width:
            current += " " + word
            continue
        if current:
            lines.append(current)
        *full, current = _break_word(word, width)
        lines += full
    return [*lines, current]


def _break_word(word: str, width: int) -> list[str]:
    parts, current = [], ""
    for piece in _WORD.findall(word):
        if current and len(current) + len(piece) > width:
            parts.append(current)
            current = ""
        current += piece
        while len(current) > width:
            parts.append(current[:width])
            current = current[width:]
    return [*parts, current]


def cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


# -- values in cells ----------------------------------------------------------------------------
def utc_time(value: datetime | None) -> str:
    """`2026-03-02 09:15:00Z`, or `-`."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def zone_time(value: datetime) -> str:
    """`2026-03-02 10:15:00 CET`: the wall time where the trigger's zone is."""
    return value.strftime("%Y-%m-%d %H:%M:%S %Z")


def duration(seconds: float | None) -> str:
    """`0.012s`, `4.5s`, `3m 05s`, `2h 03m`, or `-`."""
    if seconds is None:
        return "-"
    if seconds < 10:
        return f"{seconds:.3f}s" if seconds < 1 else f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s" if whole >= 60 else f"{whole}s"
    if whole < 86400:
        return f"{whole // 3600}h {whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d {whole % 86400 // 3600:02d}h"


def age(then: datetime, now: datetime) -> str:
    """`3m 05s ago`; `in 10s` for a time ahead of `now`."""
    delta = (now - then).total_seconds()
    return f"{duration(delta)} ago" if delta >= 0 else f"in {duration(-delta)}"


def seconds_between(start: datetime, end: datetime | None) -> float | None:
    return None if end is None else (end - start) / timedelta(seconds=1)


def options(values: Mapping[str, object]) -> str:
    """`overlap=skip retries=2`: the options that are set, in order."""
    return " ".join(f"{k}={v}" for k, v in values.items() if v is not None)
