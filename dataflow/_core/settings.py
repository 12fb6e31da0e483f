"""Settings from `DATAFLOW_*` environment variables, validated once, with one-line errors."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dataflow._core.errors import SettingsError
from dataflow._core.exports import publish
from dataflow._core.redact import redact_url, register_secret, register_url

BACKENDS = ("asyncio", "trio")
LOG_FORMATS = ("auto", "json", "console")

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Runtime settings; each field's environment variable is listed in the README."""

    backend: str = "asyncio"
    state_path: Path | None = None  # default: ./.dataflow/<workflow>.db
    # A shared PostgreSQL store instead of a file (its password masked in the repr)
    state_url: str | None = field(default=None, repr=False)
    grace_period: float = 30.0
    max_worker_threads: int = 40
    log_format: str = "auto"
    log_level: str = "info"
    timezone: str | None = None
    workflows_dir: Path = Path("workflows")
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    # Enables the status page's actions (run now, retry a dead letter) for whoever shows it.
    http_token: str | None = field(default=None, repr=False)
    history_days: float = 30.0  # run history older than this is pruned
    history_max_runs_per_trigger: int = 10_000  # and a trigger's runs beyond its newest these

    def __post_init__(self) -> None:
        """Every number in range, checked once, whether it came from the environment, the
        command line or code: a NaN grace period or zero worker threads would otherwise fail
        (or silently do nothing) only when first used."""
        _check_range("DATAFLOW_GRACE_PERIOD", self.grace_period, 0, _MAX_GRACE, "seconds")
        _check_range("DATAFLOW_MAX_WORKER_THREADS", self.max_worker_threads, 1, _MAX_THREADS)
        if self.metrics_port is not None:
            _check_range("DATAFLOW_METRICS_PORT", self.metrics_port, 0, 65535)
        _check_range("DATAFLOW_HISTORY_DAYS", self.history_days, _MIN_DAYS, _MAX_DAYS, "days")
        _check_range(
            "DATAFLOW_HISTORY_MAX_RUNS_PER_TRIGGER",
            self.history_max_runs_per_trigger,
            1,
            _MAX_RUNS_PER_TRIGGER,
        )
        _check_state_url(self.state_url, self.state_path)
        register_secret(self.http_token)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        read = _Reader(env)
        return cls(
            backend=read.choice("DATAFLOW_BACKEND", BACKENDS, "asyncio"),
            state_path=read.optional("DATAFLOW_STATE_PATH", Path),
            state_url=env.get("DATAFLOW_STATE_URL") or None,
            grace_period=read.number("DATAFLOW_GRACE_PERIOD", float, 30.0),
            max_worker_threads=read.number("DATAFLOW_MAX_WORKER_THREADS", int, 40),
            log_format=read.choice("DATAFLOW_LOG_FORMAT", LOG_FORMATS, "auto"),
            log_level=read.choice(
                "DATAFLOW_LOG_LEVEL", ("debug", "info", "warning", "error"), "info"
            ),
            timezone=read.zone("DATAFLOW_TIMEZONE"),
            workflows_dir=Path(env.get("DATAFLOW_WORKFLOWS_DIR") or "workflows"),
            metrics_port=read.optional("DATAFLOW_METRICS_PORT", int),
            metrics_host=env.get("DATAFLOW_METRICS_HOST") or "127.0.0.1",
            http_token=env.get("DATAFLOW_HTTP_TOKEN") or None,
            history_days=read.number("DATAFLOW_HISTORY_DAYS", float, 30.0),
            history_max_runs_per_trigger=read.number(
                "DATAFLOW_HISTORY_MAX_RUNS_PER_TRIGGER", int, 10_000
            ),
        )

    def state_file(self, workflow: str) -> Path:
        return self.state_path or Path(".dataflow") / f"{workflow}.db"

    def state_location(self, workflow: str) -> str:
        """Where the workflow's state is, to show: the URL (password masked) or the file."""
        return redact_url(self.state_url) if self.state_url else str(self.state_file(workflow))


_MAX_GRACE = 86_400.0  # a day: longer is a mistyped unit, not a grace period
_MAX_THREADS = 10_000
# History: a day at least, 100 years at most (longer is a typo, not a retention); a billion
# runs per trigger is far beyond what one SQLite file should hold.
_MIN_DAYS, _MAX_DAYS = 1.0, 36_500.0
_MAX_RUNS_PER_TRIGGER = 1_000_000_000


def _check_state_url(url: str | None, path: Path | None) -> None:
    """A PostgreSQL URL, and not beside a state file (which of the two would hold the state?)."""
    if url is None:
        return
    register_url(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in ("postgresql", "postgres"):
        raise SettingsError(
            f"DATAFLOW_STATE_URL={redact_url(url)!r} is not valid: use a PostgreSQL URL, "
            "postgresql://user:password@host/database"
        )
    try:  # psycopg would call a bad port a connection failure (exit 1): it is bad input
        _ = urlsplit(url).port
    except ValueError as exc:
        raise SettingsError(
            f"DATAFLOW_STATE_URL={redact_url(url)!r} is not valid: {exc}; "
            "postgresql://user:password@host:5432/database"
        ) from None
    if path is not None:
        raise SettingsError(
            "DATAFLOW_STATE_URL and DATAFLOW_STATE_PATH are both set: set only one (a state "
            "file, or a PostgreSQL store)"
        )


def _check_range(
    name: str, value: float, low: float, high: float, unit: str = "a whole number"
) -> None:
    whole = unit == "a whole number"
    fits = not isinstance(value, bool) and isinstance(value, int if whole else int | float)
    if not (fits and math.isfinite(value) and low <= value <= high):
        what = unit if whole else f"a number of {unit}"
        shown = f"{low:.0f} to {high:.0f}" if whole else f"{low:g} to {high:g}"
        raise SettingsError(f"{name}={value!r} is not valid: use {what} from {shown}")


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = (self._env.get(name) or default).strip().lower()
        if value not in allowed:
            raise SettingsError(f"{name}={value!r} is not valid: use one of {', '.join(allowed)}")
        return value

    def number(self, name: str, kind: Callable[[str], T], default: T) -> T:
        value = self.optional(name, kind)  # its range is checked by Settings itself
        return default if value is None else value

    def zone(self, name: str) -> str | None:
        """An IANA zone name, checked here so the error names the variable (a cron trigger
        would only say "unknown timezone", as if its own `timezone=` were wrong)."""
        raw = self._env.get(name) or None
        if raw is not None:
            try:
                ZoneInfo(raw)
            except (ZoneInfoNotFoundError, ValueError, OSError):
                raise SettingsError(
                    f"{name}={raw!r} is not a valid time zone: use an IANA name such as "
                    "'Europe/Berlin'"
                ) from None
        return raw

    def optional(self, name: str, kind: Callable[[str], T]) -> T | None:
        raw = self._env.get(name)
        if not raw:
            return None
        try:
            return kind(raw)
        except ValueError:
            expected = getattr(kind, "__name__", "value")
            raise SettingsError(f"{name}={raw!r} is not a valid {expected}") from None


def require_env(name: str, environ: Mapping[str, str] | None = None) -> str:
    """Return a required setting a workflow reads, or fail with one line naming it."""
    env = os.environ if environ is None else environ
    value = env.get(name)
    if not value:
        raise SettingsError(f"missing setting {name}: set the environment variable {name}")
    register_url(value)  # a setting often holds a connection URI with its password
    return value


publish("dataflow", Settings, require_env)
