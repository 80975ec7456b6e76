"""The report and comparison pages in a real browser (slow): they render, run their script without an
error, load nothing from outside, and a click on a column header sorts the table.

Needs headless Chromium. On Debian/Ubuntu: ``apt-get update && apt-get install -y chromium``. The test
fails (never skips) when it is missing. It drives the browser through the DevTools protocol over
``--remote-debugging-pipe`` (NUL-separated JSON on file descriptors 3 and 4), Python's standard
library only.
"""

from __future__ import annotations

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
from PIL import Image
from tiny_datasets import make_davis, write_drifting_predictions

from s3.eval import score_davis, write_comparison, write_report

pytestmark = pytest.mark.slow

INSTALL = "apt-get update && apt-get install -y chromium"
REPLY_TIMEOUT_S = 30.0
VIEWPORT = (1280, 1400)
VIDEOS = {"alpha": 6, "beta": 12, "gamma": 8}  # scored frames 4, 10, 6: a text sort of "10" would put beta first
DRIFT = {"alpha": {1: 1}, "gamma": {1: 2, 2: 3}}


def chromium_binary() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail(f"headless Chromium is not installed; on Debian/Ubuntu run: {INSTALL}")
    return binary


class Browser:
    """Headless Chromium with one page, driven over the DevTools pipe."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()

        def attach_pipes() -> None:  # in the child: the protocol's fixed descriptors 3 (commands) and 4 (replies)
            commands = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD, 10)
            replies = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD, 10)
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        self.process = subprocess.Popen(
            [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
             "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=attach_pipes,
        )
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._last_id = 0
        self.events: list[dict[str, Any]] = []
        self.session = ""

    def _message(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], REPLY_TIMEOUT_S)
            if not ready:
                raise TimeoutError(f"Chromium sent nothing for {REPLY_TIMEOUT_S:.0f} s")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise ConnectionError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        """Send one command (to the page once :meth:`open` attached it) and return its result."""
        self._last_id += 1
        message: dict[str, Any] = {"id": self._last_id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._message()
            if reply.get("id") == self._last_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def open(self, page: Path) -> None:
        """Load ``page`` (a file) in a fresh tab and wait until it has loaded."""
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.call(f"{domain}.enable")
        width, height = VIEWPORT
        self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", url=page.resolve().as_uri())
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._message())

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click_header(self, table_id: str, label: str) -> None:
        """A real mouse click (pressed and released) in the middle of a table header cell."""
        x, y = self.evaluate(
            f"""(() => {{
              const headers = Array.from(document.querySelectorAll("#{table_id} th"));
              const th = headers.find(t => t.textContent === {json.dumps(label)});
              th.scrollIntoView({{block: "center"}});
              const box = th.getBoundingClientRect();
              return [box.x + box.width / 2, box.y + box.height / 2];
            }})()"""
        )
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def column(self, table_id: str, index: int) -> list[str]:
        """The sort keys (``data-v``) of one column, top row first."""
        rows = f'document.querySelectorAll("#{table_id} tbody tr")'
        return self.evaluate(f"Array.from({rows}, row => row.cells[{index}].dataset.v)")

    def screenshot(self) -> np.ndarray:
        self.evaluate("window.scrollTo(0, 0)")
        data = self.call("Page.captureScreenshot", format="png")["data"]
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    def problems(self) -> list[str]:
        """Script errors, console errors and requests for anything but the page itself and data: URIs."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"script error: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                found.append(f"console error: {params.get('args')}")
            elif method == "Network.requestWillBeSent" and not params["request"]["url"].startswith(("file:", "data:")):
                found.append(f"external request: {params['request']['url']}")
        return found

    def close(self) -> Optional[int]:
        try:
            self.call("Browser.close")
        except (ConnectionError, TimeoutError, RuntimeError):
            pass
        try:
            return self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            os.close(self._to_browser)
            os.close(self._from_browser)


def assert_not_blank(shot: np.ndarray, saved: Path) -> None:
    """The screenshot shows a page: many colours, dark text on the background, not one flat colour."""
    Image.fromarray(shot).save(saved)
    assert shot.shape[:2] == (VIEWPORT[1], VIEWPORT[0])
    colours = np.unique(shot.reshape(-1, 3), axis=0)
    dark = np.mean(shot.mean(axis=2) < 100)
    assert len(colours) > 50 and 0.005 < dark < 0.5 and shot.std() > 20, f"blank-looking screenshot {saved}"


@pytest.fixture
def pages(tmp_path: Path) -> tuple[Path, Path]:
    """The report of one run and the comparison of it with an exact run."""
    root = tmp_path / "DAVIS"
    make_davis(root, VIDEOS)
    gt_dir = root / "Annotations" / "480p"
    runs = []
    for name, drift in (("drifting", DRIFT), ("exact", {})):
        runs.append(tmp_path / name)
        write_drifting_predictions(gt_dir, runs[-1], drift)
        score_davis(root, "val", runs[-1], progress=False, per_frame=True)
    report = write_report(runs[0], gt_dir, root / "JPEGImages" / "480p")
    comparison = write_comparison(runs, tmp_path / "compare.html")
    return report, comparison


def test_pages_render_and_sort_in_chromium(pages: tuple[Path, Path], tmp_path: Path) -> None:
    report, comparison = pages
    browser = Browser(chromium_binary(), tmp_path / "profile")
    try:
        browser.open(report)
        assert_not_blank(browser.screenshot(), tmp_path / "report.png")
        assert browser.evaluate("document.querySelectorAll('img').length") == 24
        assert browser.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        assert browser.column("sequences", 0) == ["gamma", "alpha", "beta"]  # as written: worst J&F first
        browser.click_header("sequences", "Sequence")
        assert browser.column("sequences", 0) == ["alpha", "beta", "gamma"]
        browser.click_header("sequences", "Sequence")
        assert browser.column("sequences", 0) == ["gamma", "beta", "alpha"]
        browser.click_header("sequences", "frames")  # numbers: 4 < 6 < 10
        assert browser.column("sequences", 0) == ["alpha", "gamma", "beta"]
        assert [float(v) for v in browser.column("sequences", 5)] == [4, 6, 10]
        browser.click_header("objects", "J-Mean")
        j_means = [float(v) for v in browser.column("objects", 3)]
        assert j_means == sorted(j_means) and len(j_means) == 6
        assert browser.evaluate("document.querySelector('#seq-2').open") is False
        browser.evaluate("document.querySelector('#sequences a[href=\"#seq-2\"]').click()")
        assert browser.evaluate("document.querySelector('#seq-2').open") is True  # the link unfolds the curves
        assert browser.problems() == []

        browser.events.clear()
        browser.open(comparison)
        assert_not_blank(browser.screenshot(), tmp_path / "comparison.png")
        browser.click_header("deltas", "Sequence")
        assert browser.column("deltas", 0) == ["alpha", "beta", "gamma"]
        assert browser.problems() == []
    finally:
        assert browser.close() is not None
