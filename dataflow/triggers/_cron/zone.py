"""Time zones for cron schedules: pick the zone, and find where its UTC offset changes.

`zoneinfo` does not expose a zone's transitions, so they are found by probing the offset
every `_PROBE` and bisecting to the second where it changes. Since 1900 tzdata never puts
two offset changes less than about four days apart, so a two-day probe cannot step over a
change and back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ENV_VAR: Final = "DATAFLOW_TIMEZONE"
_PROBE: Final = timedelta(days=2)
_TICK: Final = timedelta(microseconds=1)
# Zones whose offset never changes, by definition (UTC and its aliases, the Etc/GMT±N fixed
# offsets): no probing for a change they cannot have (15 probes per trigger at start).
_FIXED: Final = frozenset(
    {"UTC", "Etc/UTC", "UCT", "Etc/UCT", "Universal", "Etc/Universal", "Zulu", "Etc/Zulu"}
    | {"GMT", "GMT0", "GMT+0", "GMT-0", "Greenwich", "Etc/Greenwich"}
)
_ETC_TIMEZONE: Final = Path("/etc/timezone")
_ETC_LOCALTIME: Final = Path("/etc/localtime")


def resolve_timezone(
    name: str | ZoneInfo | None, environ: Mapping[str, str] | None = None
) -> ZoneInfo:
    """The zone to use: `name`, else $DATAFLOW_TIMEZONE, else the machine's zone, else UTC."""
    if isinstance(name, ZoneInfo):
        return name
    env = os.environ if environ is None else environ
    if name is None:
        name = env.get(ENV_VAR) or None
    if name is None:
        return machine_zone(env)
    if not isinstance(name, str):
        kind = type(name).__name__
        raise TypeError(f"timezone must be an IANA name or a ZoneInfo, got {kind}")
    return load_zone(name)


def load_zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; a ValueError with a one-line hint when there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        hint = "use an IANA name such as 'Europe/Berlin'"
        raise ValueError(f"unknown timezone {name!r}: {hint}") from None


def machine_zone(
    environ: Mapping[str, str],
    etc_timezone: Path = _ETC_TIMEZONE,
    etc_localtime: Path = _ETC_LOCALTIME,
) -> ZoneInfo:
    """The machine's IANA zone from $TZ, /etc/timezone or the /etc/localtime link; else UTC."""
    sources: tuple[Callable[[], str | None], ...] = (
        lambda: _key_from_tz(environ.get("TZ", "")),
        lambda: _read_first_line(etc_timezone),
        lambda: _key_from_link(etc_localtime),
    )
    for key in _keys(sources):
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            continue  # e.g. a POSIX rule such as TZ=CET-1CEST: try the next source
    return ZoneInfo("UTC")


def _keys(sources: tuple[Callable[[], str | None], ...]) -> Iterator[str]:
    for source in sources:  # lazily: a valid $TZ means no file is read
        key = source()
        if key:
            yield key


def _key_from_tz(value: str) -> str | None:
    value = value.removeprefix(":")  # glibc's ":Europe/Berlin" form
    return _key_from_path(value) if value.startswith("/") else value


def _read_first_line(path: Path) -> str | None:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    return lines[0].strip() if lines else None


def _key_from_link(path: Path) -> str | None:
    try:
        target = os.readlink(path)
    except OSError:  # missing, or a plain copy of a zone file: its name is unknown
        return None
    return _key_from_path(target)


def _key_from_path(path: str) -> str | None:
    # /usr/share/zoneinfo/Europe/Berlin, ../usr/share/zoneinfo/posix/Europe/Berlin
    _, marker, key = path.rpartition("zoneinfo/")
    if not marker:
        return None
    return key.removeprefix("posix/").removeprefix("right/") or None


def offset_at(zone: ZoneInfo, instant: datetime) -> timedelta:
    """The UTC offset of `zone` at an aware instant."""
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def is_fixed(zone: ZoneInfo) -> bool:
    """A zone whose offset never changes (UTC, Etc/GMT+5): no change to look for."""
    key = zone.key or ""
    return key in _FIXED or key.startswith("Etc/GMT")


def first_change(zone: ZoneInfo, low: datetime, high: datetime) -> datetime | None:
    """The first instant in (low, high] whose offset differs from the offset at `low`."""
    if is_fixed(zone):
        return None
    reference = offset_at(zone, low)
    probe = low
    while probe < high:
        following = probe + min(_PROBE, high - probe)  # never past datetime.max
        if offset_at(zone, following) != reference:
            return _bisect(zone, probe, following)
        probe = following
    return None


def last_change(zone: ZoneInfo, low: datetime, high: datetime) -> datetime | None:
    """The last instant in (low, high) where the offset changes; high is exclusive."""
    if is_fixed(zone):
        return None
    probe = high - _TICK
    reference = offset_at(zone, probe)
    while probe > low:
        preceding = probe - min(_PROBE, probe - low)
        if offset_at(zone, preceding) != reference:
            return _bisect(zone, preceding, probe)
        probe = preceding
    return None


def _bisect(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The change instant in (low, high], given different offsets at both ends.

    tzdata changes happen on whole seconds, so the search runs over integer timestamps.
    """
    before, after = math.floor(low.timestamp()), math.floor(high.timestamp())
    low_offset = offset_at(zone, low)
    while after - before > 1:
        middle = (before + after) // 2
        if offset_at(zone, datetime.fromtimestamp(middle, UTC)) == low_offset:
            before = middle
        else:
            after = middle
    return datetime.fromtimestamp(after, UTC)
