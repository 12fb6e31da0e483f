"""A real `python -m dataflow run` under a 256 open-file limit, attacked by slowloris clients
or by 1,000 concurrent scrapes: /healthz still answers within a second, cron keeps firing,
and handlers can still open files.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests._paths import ROOT

pytestmark = pytest.mark.slow
SLOW_CLIENTS = 300  # more than the process may open files
SCRAPES = 1000  # at once: four times what the process may open
ATTACK_SECONDS = 4.0

TICKING = """
from pathlib import Path
from dataflow import Workflow, cronjob

class Ticking(Workflow):
    @cronjob("* * * * * *")
    def tick(self):
        with open(Path(__file__).parent.parent / "ticks.txt", "a") as out:  # a file to open
            out.write("tick\\n")
"""


def _low_file_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def _slow_client(port: int) -> socket.socket:
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the end of the head
    client.setblocking(False)
    return client


def _dropped(client: socket.socket) -> bool:
    try:
        return client.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError as exc:
        return exc.errno in (errno.ECONNRESET, errno.EPIPE)


def _health_in_a_second(url: str) -> int:
    with urllib.request.urlopen(url, timeout=1.0) as response:
        return int(response.status)


def _start_ticking(project: Path) -> subprocess.Popen[str]:
    """`python -m dataflow run ticking` in `project`, its page on a free port, under the limit."""
    (project / "workflows").mkdir()
    (project / "workflows" / "ticking.py").write_text(textwrap.dedent(TICKING))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DATAFLOW_LOG_FORMAT": "json"}
    return subprocess.Popen(
        [sys.executable, "-m", "dataflow", "run", "ticking", "--metrics-port", "0"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_low_file_limit,
    )


def test_slowloris_under_a_256_file_limit_leaves_health_cron_and_handlers_working(
    tmp_path: Path,
) -> None:
    proc = _start_ticking(tmp_path)
    watchdog = threading.Timer(60, proc.kill)  # a hung process fails the test, never hangs it
    watchdog.start()
    clients: list[socket.socket] = []
    try:
        url = _serving_url(proc)
        port = int(url.rsplit(":", 1)[1])
        clients = [_slow_client(port) for _ in range(SLOW_CLIENTS)]
        opened, answers, ticks_before = SLOW_CLIENTS, [], _ticks(tmp_path)
        ends = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < ends:  # a sustained attack: every dropped client comes back
            for i, client in enumerate(clients):
                if _dropped(client):
                    client.close()
                    clients[i] = _slow_client(port)
                    opened += 1
            answers.append(_health_in_a_second(url + "/healthz"))
        fired = _ticks(tmp_path) - ticks_before
        failed = _json(url + "/api/runs?status=failed")["runs"]
    finally:
        for client in clients:
            client.close()
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        watchdog.cancel()
    assert opened >= 1000  # 1,000 slow clients or more over the attack
    assert answers and set(answers) == {200}
    assert fired >= 2  # cron kept firing during the attack (once a second)
    assert failed == []
    assert "Too many open files" not in output
    assert proc.returncode == 0


def test_a_thousand_concurrent_scrapes_under_a_256_file_limit_all_succeed(
    tmp_path: Path,
) -> None:
    """1,000 clients connect at once and each sends a whole `GET /metrics`: the server takes as
    many as its bound allows, the others wait in the listen backlog; every scrape gets its
    200, /healthz answers within a second meanwhile, cron fires, no handler run fails."""
    proc = _start_ticking(tmp_path)
    watchdog = threading.Timer(90, proc.kill)  # a hung process fails the test, never hangs it
    watchdog.start()
    try:
        url = _serving_url(proc)
        port = int(url.rsplit(":", 1)[1])
        answers: list[int] = []
        health: list[int] = []
        ticks_before, rounds = _ticks(tmp_path), 0
        ends = time.monotonic() + ATTACK_SECONDS
        while time.monotonic() < ends:  # a sustained attack: round after round of 1,000
            answers += _scrape_at_once(port, health, url + "/healthz")
            rounds += 1
        fired = _ticks(tmp_path) - ticks_before
        failed = _json(url + "/api/runs?status=failed")["runs"]
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
        watchdog.cancel()
    assert answers == [200] * SCRAPES * rounds
    assert health and set(health) == {200}
    assert fired >= 2  # cron kept firing (once a second) while the scrapes were answered
    assert failed == []
    assert "Too many open files" not in output
    assert proc.returncode == 0


def _scrape_at_once(port: int, health: list[int], health_url: str) -> list[int]:
    """1,000 clients connect, then each sends a whole `GET /metrics`; their statuses, read in
    a thread while /healthz is asked meanwhile (`health`: its statuses)."""
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(SCRAPES)]
    try:
        for client in clients:
            client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers: list[int] = []
        reading = threading.Thread(target=lambda: answers.extend(_read_all(clients)))
        reading.start()
        while reading.is_alive():
            health.append(_health_in_a_second(health_url))
            reading.join(0.2)
        return answers
    finally:
        for client in clients:
            client.close()


def _read_all(clients: list[socket.socket]) -> list[int]:
    """Each client's answer (its HTTP status), read to the end, in turn."""
    statuses = []
    for client in clients:
        client.settimeout(60)
        answer = b""
        try:
            while chunk := client.recv(65536):
                answer += chunk
        except ConnectionResetError:
            answer = b""  # dropped by the server: counted as 0
        statuses.append(int(answer.split(b" ", 2)[1]) if answer else 0)
    return statuses


def _serving_url(proc: subprocess.Popen[str]) -> str:
    """The page's URL, once the workflow runs."""
    assert proc.stdout is not None
    url = ""
    for line in proc.stdout:
        event = json.loads(line) if line.startswith("{") else {}
        if event.get("event") == "serving metrics":
            url = str(event["page"]).rstrip("/")
        elif event.get("event") == "workflow running":
            return url
    raise AssertionError("the workflow never ran")


def _ticks(tmp_path: Path) -> int:
    path = tmp_path / "ticks.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _json(url: str) -> dict[str, list[object]]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]
