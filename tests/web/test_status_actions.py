"""Actions (run now, retry a dead letter) exist only with DATAFLOW_HTTP_TOKEN, and answer only
to the token (a bearer header, or the cookie the login form sets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dataflow import Runtime, Settings, Workflow, cronjob
from tests.web._status import fetch, serving, until

pytestmark = pytest.mark.anyio
TOKEN = "open-sesame-42"


class Manual(Workflow):
    workflow_name = "manual"

    def __init__(self) -> None:
        self.payloads: list[object] = []

    @cronjob("0 0 1 1 *")
    async def yearly(self) -> None:
        self.payloads.append("ran")


def _runs(runtime: Runtime) -> list[str]:
    return [run.status for run in runtime.state.runs("manual", "yearly", limit=10)]


async def test_without_the_setting_there_are_no_actions_and_no_buttons(tmp_path: Path) -> None:
    async with serving(Manual(), tmp_path) as (runtime, _):
        run = await fetch(runtime, "/api/triggers/yearly/run", method="POST", data=b"")
        bearer = await fetch(
            runtime, "/api/triggers/yearly/run", method="POST", data=b"", Authorization="Bearer x"
        )
        login = await fetch(runtime, "/login", method="POST", data=b"token=x")
        page = await fetch(runtime, "/")
    assert run.status == bearer.status == login.status == 404
    assert '"actions": false' in page.body and 'action="/login"' not in page.body
    assert _runs(runtime) == []


async def test_a_wrong_token_gets_401_and_the_right_one_runs_the_trigger(tmp_path: Path) -> None:
    async with serving(Manual(), tmp_path, token=TOKEN) as (runtime, _):
        path = "/api/triggers/yearly/run"
        none = await fetch(runtime, path, method="POST", data=b"")
        wrong = await fetch(runtime, path, method="POST", data=b"", Authorization="Bearer nope")
        right = await fetch(runtime, path, method="POST", data=b"", Authorization=f"Bearer {TOKEN}")
        await until(lambda: _runs(runtime) == ["succeeded"])
        unknown = await fetch(
            runtime,
            "/api/triggers/nope/run",
            method="POST",
            data=b"",
            Authorization=f"Bearer {TOKEN}",
        )
    assert none.status == wrong.status == 401 and "token" in wrong.json()["error"]
    assert right.status == 202 and right.json()["trigger"] == "yearly"
    assert unknown.status == 404
    assert TOKEN not in wrong.body + right.body


async def test_the_login_form_sets_a_same_site_cookie_that_allows_actions(tmp_path: Path) -> None:
    async with serving(Manual(), tmp_path, token=TOKEN) as (runtime, _):
        form = await fetch(runtime, "/")
        wrong = await fetch(runtime, "/login", method="POST", data=b"token=guess")
        login = await fetch(runtime, "/login", method="POST", data=f"token={TOKEN}".encode())
        cookie = login.headers["set-cookie"].split(";")[0]
        page = await fetch(runtime, "/", Cookie=cookie)
        run = await fetch(
            runtime, "/api/triggers/yearly/run", method="POST", data=b"", Cookie=cookie
        )
        await until(lambda: _runs(runtime) == ["succeeded"])
    assert 'action="/login"' in form.body and '"actions": false' in form.body
    assert wrong.status == 401
    assert login.status == 303 and login.headers["location"] == "/"
    assert "SameSite=Strict" in login.headers["set-cookie"]
    assert "HttpOnly" in login.headers["set-cookie"] and TOKEN not in login.headers["set-cookie"]
    assert '"actions": true' in page.body and 'action="/login"' not in page.body
    assert run.status == 202


async def test_retrying_a_dead_letter_runs_it_and_records_the_outcome(tmp_path: Path) -> None:
    workflow = Manual()
    async with serving(workflow, tmp_path, token=TOKEN) as (runtime, _):
        letter = await runtime.state.call(
            runtime.state.add_dead_letter, "manual", "yearly", '{"order": 7}', "ValueError: no"
        )
        auth = f"Bearer {TOKEN}"
        retry = await fetch(
            runtime,
            f"/api/dead-letters/{letter}/retry",
            method="POST",
            data=b"",
            Authorization=auth,
        )
        missing = await fetch(
            runtime, "/api/dead-letters/999/retry", method="POST", data=b"", Authorization=auth
        )
        await until(lambda: not runtime.state.dead_letters("manual"))  # retried successfully
        left = await fetch(runtime, "/api/dead-letters?all=1")
    assert retry.status == 202 and missing.status == 404
    assert left.json()[0]["retry_status"] == "succeeded"
    assert workflow.payloads == ["ran"]


def test_the_token_setting_comes_from_the_environment_and_never_shows() -> None:
    settings = Settings.from_env({"DATAFLOW_HTTP_TOKEN": TOKEN})
    assert settings.http_token == TOKEN and TOKEN not in repr(settings)
    assert Settings.from_env({}).http_token is None


async def test_a_trigger_that_cannot_run_by_hand_gets_409_naming_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refusal from the trigger (a change stream run by hand needs an event) is a 409 with
    its one line, not a 500 with a traceback in the log; the server goes on."""
    from dataflow import SettingsError
    from dataflow.triggers._cron.trigger import CronTrigger

    def refuse(self: CronTrigger, event: object) -> None:
        raise SettingsError(f"trigger {self.name!r} needs a change event to run by hand")

    monkeypatch.setattr(CronTrigger, "manual_request", refuse)
    async with serving(Manual(), tmp_path, token=TOKEN) as (runtime, _):
        bearer = f"Bearer {TOKEN}"
        path = "/api/triggers/yearly/run"
        refused = await fetch(runtime, path, method="POST", data=b"", Authorization=bearer)
        health = await fetch(runtime, "/healthz")
    assert refused.status == 409
    assert refused.json()["error"] == "trigger 'yearly' needs a change event to run by hand"
    assert health.status == 200 and _runs(runtime) == []
