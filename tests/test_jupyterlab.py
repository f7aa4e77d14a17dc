"""JupyterLab as a user meets it: a headless server on a loopback port, the notebooks served as
notebooks, the ``llm4brain`` kernel listed, jupytext's notebook the default viewer of ``.py``
files, and one notebook executed cell by cell on the smoke profile through that kernel over
the server's websocket (what the browser does when you press Run All).
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path

import jupytext
import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))
JUPYTER = Path(sys.executable).parent / "jupyter"
TOKEN = uuid.uuid4().hex


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self, tmp: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.home = tmp / "home"
        env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "cfg"), JUPYTER_RUNTIME_DIR=str(tmp / "rt"),
                   LLM4BRAIN_HOME=str(self.home), MPLBACKEND="Agg")
        cmd = [str(JUPYTER), "lab", "--no-browser", f"--ServerApp.port={self.port}",
               "--ServerApp.port_retries=0", "--ServerApp.ip=127.0.0.1",
               f"--IdentityProvider.token={TOKEN}", f"--ServerApp.root_dir={ROOT / 'notebooks'}"]
        if os.geteuid() == 0:             # as `make lab` does in a container
            cmd.append("--allow-root")
        self.log = open(tmp / "server.log", "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        t0 = time.time()
        while True:
            try:
                self.get("/api/status")
                return
            except (urllib.error.URLError, ConnectionError):
                if self.proc.poll() is not None or time.time() - t0 > 90:
                    self.log.flush()
                    raise RuntimeError("jupyter lab did not start:\n" + (tmp / "server.log").read_text()[-3000:])
                time.sleep(0.5)

    def request(self, path: str, method: str = "GET", body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {TOKEN}",
                                              "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read().decode()
        return json.loads(text) if text else None

    def get(self, path: str):
        return self.request(path)

    def stop(self):
        try:
            self.request("/api/shutdown", "POST")
        except (urllib.error.URLError, ConnectionError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not JUPYTER.exists():
        pytest.fail(f"{JUPYTER} missing: JupyterLab belongs to the environment (make venv)")
    s = _Server(tmp_path_factory.mktemp("lab"))
    yield s
    s.stop()
    assert s.proc.returncode is not None


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_sources_are_served_as_notebooks(server, nb):
    meta = server.get(f"/api/contents/{nb.name}?content=0")
    assert meta["type"] == "notebook", f"{nb.name} is served as {meta['type']}"
    full = server.get(f"/api/contents/{nb.name}?type=notebook")
    cells = full["content"]["cells"]
    assert {c["cell_type"] for c in cells} >= {"markdown", "code"}
    assert full["content"]["metadata"]["kernelspec"]["name"] == "llm4brain"
    first_code = next(c for c in cells if c["cell_type"] == "code")
    assert "parameters" in first_code["metadata"].get("tags", [])


def test_kernel_is_listed_and_runs_in_this_environment(server):
    specs = server.get("/api/kernelspecs")["kernelspecs"]
    assert "llm4brain" in specs, sorted(specs)
    spec = specs["llm4brain"]["spec"]
    assert spec["display_name"] == "llm4brain (.venv)"
    assert Path(spec["argv"][0]).resolve() == Path(sys.executable).resolve()


def test_notebook_is_the_default_viewer_of_py_files(server):
    s = server.get("/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    viewers = s["schema"]["properties"]["defaultViewers"]["default"]
    assert viewers.get("python") == "Jupytext Notebook", viewers
    # the viewer named there is the one jupytext's lab extension registers
    ext = server.get("/lab/api/extensions")
    names = {e["name"] for e in (ext if isinstance(ext, list) else ext.get("installed", []))}
    assert "jupyterlab-jupytext" in names, sorted(names)
    # no news feed or update check: GPU boxes and laptops here often have no network
    n = server.get("/lab/api/settings/@jupyterlab/apputils-extension:notification")
    assert n["schema"]["properties"]["fetchNews"]["default"] == "false"


def _message(session: str, code: str) -> dict:
    return {"header": {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "username": "test",
                       "session": session, "date": datetime.now(timezone.utc).isoformat(),
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True,
                        "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}


async def _execute(ws_url: str, cells: list[str], timeout: float) -> list[dict]:
    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {TOKEN}"}))
    session, replies = uuid.uuid4().hex, []
    try:
        for code in cells:
            msg = _message(session, code)
            await conn.write_message(json.dumps(msg))
            errors = []
            while True:
                raw = await asyncio.wait_for(conn.read_message(), timeout)
                assert raw is not None, "the kernel's websocket closed"
                m = json.loads(raw)
                if m.get("parent_header", {}).get("msg_id") != msg["header"]["msg_id"]:
                    continue
                if m["msg_type"] == "error":
                    errors.append("\n".join(m["content"]["traceback"]))
                if m["msg_type"] == "execute_reply":
                    replies.append(dict(m["content"], errors=errors, code=code))
                    break
            if replies[-1]["status"] != "ok":
                break
    finally:
        conn.close()
    return replies


@pytest.mark.notebooks
def test_a_notebook_runs_on_smoke_through_the_servers_kernel(server):
    nb_path = ROOT / "notebooks" / "00_simulate_dataset.py"
    nb = jupytext.read(nb_path)
    cells = []
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        cells.append(c.source)
        if "parameters" in c.metadata.get("tags", []):
            cells.append('PROFILE = "smoke"')       # what papermill injects
    sess = server.request("/api/sessions", "POST", {"path": nb_path.name, "type": "notebook",
                                                     "name": nb_path.name,
                                                     "kernel": {"name": "llm4brain"}})
    kid = sess["kernel"]["id"]
    try:
        ws = f"ws://127.0.0.1:{server.port}/api/kernels/{kid}/channels"
        replies = asyncio.run(_execute(ws, cells, timeout=600))
    finally:
        server.request(f"/api/sessions/{sess['id']}", "DELETE")
    bad = [r for r in replies if r["status"] != "ok"]
    assert not bad, f"cell failed:\n{bad[0]['code'][:300]}\n{''.join(bad[0]['errors'])[-3000:]}"
    assert len(replies) == len(cells)
    # it ran in the server's environment: the smoke dataset is in the server's LLM4BRAIN_HOME
    dataset = server.home / "runs" / "smoke"
    assert any(dataset.rglob("*_bold.nii.gz")), sorted(p.name for p in dataset.rglob("*"))[:20]
    assert server.get("/api/sessions") == []
