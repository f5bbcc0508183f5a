"""The report page as a person sees it: loaded in headless Chromium over the DevTools protocol
(websocket-client, from the ``dev`` extra). The page must load with no console error and no
request outside itself, every image must decode with a non-zero size, and the counts on the
page must equal the manifest's. Skipped, with the reason, where no Chromium is installed
(CI installs Debian's ``chromium`` in ``.ci/run``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import shards
from gradum_cli.main import main as gradum

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
]

# Runs in the page once it has loaded: decode every image, read the marked counts.
PROBE = """(async () => {
  const imgs = [];
  for (const im of document.images) {
    let error = null;
    try { await im.decode(); } catch (e) { error = String(e); }
    imgs.push({alt: im.alt, error, w: im.naturalWidth, h: im.naturalHeight});
  }
  const counts = {};
  for (const el of document.querySelectorAll('[data-count]'))
    counts[el.dataset.count] = el.textContent.trim();
  const sections = [...document.querySelectorAll('section h2')].map(h => h.textContent);
  return JSON.stringify({imgs, counts, sections, svgs: document.querySelectorAll('svg').length});
})()"""


def _browser() -> str | None:
    found = next((b for b in map(shutil.which, BROWSERS) if b), None)
    return os.environ.get("GRADUM_CHROMIUM") or found


class Page:
    """One headless Chromium and a DevTools-protocol connection to its page."""

    def __init__(self, binary: str) -> None:
        websocket = pytest.importorskip("websocket", reason="websocket-client (dev extra)")
        self.profile = tempfile.mkdtemp(prefix="gradum-chromium-")
        self.proc = subprocess.Popen(
            [binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"{binary} did not open its DevTools port")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
            target = next(t for t in json.load(r) if t["type"] == "page")
        self.ws = websocket.create_connection(
            target["webSocketDebuggerUrl"], timeout=60, suppress_origin=True
        )
        self.next_id = 0
        self.events: list[dict] = []
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]
            self.events.append(msg)

    def wait_for(self, method: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            self.events.append(json.loads(self.ws.recv()))

    def load(self, path: Path) -> dict:
        """Open ``path``; return what PROBE found plus the console errors and the requests."""
        self.events.clear()
        self.call("Page.navigate", url=path.resolve().as_uri())
        self.wait_for("Page.loadEventFired")
        res = self.call("Runtime.evaluate", expression=PROBE, awaitPromise=True)
        found = json.loads(res["result"]["value"])
        found["errors"] = [
            json.dumps(e["params"])[:2000]
            for e in self.events
            if e.get("method") == "Runtime.exceptionThrown"
            or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
            or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
        ]
        found["requests"] = [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
            and not e["params"]["request"]["url"].startswith("data:")
        ]
        return found

    def close(self) -> None:
        if getattr(self, "ws", None) is not None:
            self.ws.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def page():
    binary = _browser()
    if binary is None:
        pytest.skip("no Chromium on PATH (Debian: apt-get install chromium); .ci/run installs it")
    p = Page(binary)
    yield p
    p.close()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A scored, clustered dataset with dead letters of two kinds (counts add up)."""
    out = tmp_path_factory.mktemp("browser") / "ds"
    rng = np.random.default_rng(7)
    n = 400
    d = rng.random(n).astype(np.float32)
    table = pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "text": pa.array(
                [f"record {i} " + "word " * (i % 40) for i in range(n)], pa.large_string()
            ),
            "readability": (100 - 60 * d + rng.normal(0, 8, n)).astype(np.float32),
            "perplexity": np.exp(2 + 2 * d).astype(np.float32),
            "cluster": (np.arange(n) % 5).astype(np.int32),
            "difficulty": d,
        }
    )
    with shards.DeadLetterWriter(out, "read-00000") as w:
        for pos in (3, 17, 18):
            w.write(
                f"malformed JSON: Expecting value (column {pos})",
                {"source": "in.jsonl", "position": pos},
                stage="read",
            )
        w.write("empty text", {"source": "in.jsonl", "position": 40}, stage="validate")
    signals = [
        {"name": "readability", "version": "1", "direction": -1, "params": {}},
        {"name": "perplexity", "version": "1", "direction": 1, "params": {}},
    ]
    manifest = shards.write_dataset(
        out,
        table,
        max_rows=150,
        signals=signals,
        clusters={"k": 5},
        counts={"input": n + 4, "written": n, "dead_letter": 4},
    )
    return out, manifest


def test_report_page_in_chromium(page, dataset, tmp_path, capsys):
    out, manifest = dataset
    html = tmp_path / "report.html"
    assert gradum(["shards", "report", str(out), "--html", str(html)]) == 0
    found = page.load(html)
    assert found["errors"] == []
    assert found["requests"] == [html.resolve().as_uri()]  # nothing but the page itself
    # histograms (SVG) for both signals and difficulty; PNGs: scatter, cluster sizes, preview
    assert found["svgs"] == 3
    assert len(found["imgs"]) == 3
    for im in found["imgs"]:
        assert im["error"] is None and im["w"] > 0 and im["h"] > 0, im
    counts = {k: int(v.replace(",", "")) for k, v in found["counts"].items()}
    c = manifest["counts"]
    assert counts == {
        "input": c["input"],
        "written": c["written"],
        "dead_letter": c["dead_letter"],
        "rows": c["written"],
        "dead_letter_lines": c["dead_letter"],
    }
    assert "Curriculum preview" in found["sections"]
    assert "Dead letters" in found["sections"]


def test_harness_sees_a_broken_page(page, tmp_path):
    """The checks above can fail: a bad image, a script error and an outside request show."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<!doctype html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img alt="x" src="data:image/png;base64,AAAA">'
        '<img alt="y" src="http://127.0.0.1:9/nothing.png">'
        "<script>undefined_function()</script></body></html>"
    )
    found = page.load(bad)
    assert any("undefined_function" in e for e in found["errors"]), found["errors"]
    assert "http://127.0.0.1:9/nothing.png" in found["requests"]
    assert [im["error"] is not None for im in found["imgs"]] == [True, True]
    assert all(im["w"] == 0 for im in found["imgs"])
