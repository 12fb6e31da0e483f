"""The status page: one HTML file with a little vanilla JavaScript, no build step, nothing
fetched from the internet. The server fills in the workflow's name and whether the action
buttons (or the login form) show; the script reads everything else from the JSON API.
"""

from __future__ import annotations

import html
import json
from functools import cache
from importlib.resources import files


@cache
def _template() -> str:
    return files("dataflow.runtime._web").joinpath("page.html").read_text(encoding="utf-8")


def render_page(workflow: str, actions: bool, authorised: bool) -> bytes:
    """`actions`: DATAFLOW_HTTP_TOKEN is set; `authorised`: this browser showed it."""
    config = json.dumps({"workflow": workflow, "actions": actions and authorised})
    page = (
        _template()
        .replace("{{workflow}}", html.escape(workflow))
        .replace("{{config}}", config.replace("<", "\\u003c"))  # never closes the <script>
        .replace("{{login}}", _LOGIN if actions and not authorised else "")
    )
    return page.encode()


_LOGIN = """<form id="login" method="post" action="/login">
  <label>Token for actions <input type="password" name="token" autocomplete="off"></label>
  <button type="submit">Log in</button>
</form>"""
