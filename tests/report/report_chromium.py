"""Open a page in headless Chromium through the DevTools protocol and report what a person would
meet: console errors (Runtime exceptions, console.error, Log entries such as CSP violations or
failed loads), requests that left the machine, the page's visible text, and a full-page PNG.

The browser runs with a fresh profile, no sandbox (CI runs as root), no GPU and no background
networking; the DevTools port is chosen by Chromium and read from DevToolsActivePort.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-port=0")
LOCAL_SCHEMES = ("file:", "data:", "about:", "chrome:", "devtools:")


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class PageCheck:
    console_errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    text: str = ""
    screenshot: Path | None = None
    width: int = 0
    height: int = 0


class _Cdp:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.loaded = asyncio.Event()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data and data["id"] in self.pending:
                self.pending.pop(data["id"]).set_result(data)
            elif "method" in data:
                self.events.append(data)
                if data["method"] == "Page.loadEventFired":
                    self.loaded.set()
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(ConnectionError("DevTools connection closed"))

    async def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
                   timeout: float = 30.0) -> dict[str, Any]:
        n = next(self.ids)
        message: dict[str, Any] = {"id": n, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[n] = fut
        await self.ws.send_str(json.dumps(message))
        reply = await asyncio.wait_for(fut, timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return dict(reply.get("result") or {})


def _console_errors(events: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    errors: list[str] = []
    external: list[str] = []
    for e in events:
        method, params = e["method"], e.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            desc = (details.get("exception") or {}).get("description") or details.get("text", "")
            errors.append(f"exception: {desc}".strip())
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            errors.append(f"console.{params.get('type')}: {args}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url') or ''}".strip())
        elif method == "Network.requestWillBeSent":
            url = str(params.get("request", {}).get("url", ""))
            if not url.startswith(LOCAL_SCHEMES):
                external.append(url)
    return errors, external


async def _drive(port: int, ws_path: str, page: Path, screenshot: Path | None, width: int) -> PageCheck:
    async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{port}{ws_path}",
                                                                 max_msg_size=0) as ws:
        cdp = _Cdp(ws)
        target = (await cdp.call("Target.createTarget", {"url": "about:blank"}))["targetId"]
        session = (await cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
        for domain in ("Runtime", "Log", "Page", "Network"):
            await cdp.call(f"{domain}.enable", session=session)
        await cdp.call("Emulation.setDeviceMetricsOverride",
                       {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        cdp.loaded.clear()
        nav = await cdp.call("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
        if nav.get("errorText"):
            raise RuntimeError(f"navigation failed: {nav['errorText']}")
        await asyncio.wait_for(cdp.loaded.wait(), 30)
        # late console messages (a timer, a deferred script) land within a few hundred ms
        await cdp.call("Runtime.evaluate", {"expression": "new Promise(r => setTimeout(r, 300))",
                                            "awaitPromise": True}, session=session)
        text = (await cdp.call("Runtime.evaluate", {"expression": "document.body ? document.body.innerText : ''",
                                                    "returnByValue": True}, session=session))
        out = PageCheck(text=str(text.get("result", {}).get("value", "")))
        metrics = await cdp.call("Page.getLayoutMetrics", session=session)
        size = metrics.get("cssContentSize") or metrics.get("contentSize") or {}
        out.width, out.height = int(size.get("width", width)), int(size.get("height", 900))
        if screenshot is not None:
            height = min(out.height, 16_000)
            await cdp.call("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                           session=session)
            shot = await cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                  session=session, timeout=60)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            out.screenshot = screenshot
        out.console_errors, out.external_requests = _console_errors(cdp.events)
        try:
            await cdp.call("Browser.close", timeout=5)
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        cdp.reader.cancel()
        return out


def check_page(page: Path, screenshot: Path | None = None, width: int = 1280, chromium: str | None = None,
               timeout: float = 90.0) -> PageCheck:
    binary = chromium or find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary on PATH (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="gameday-chromium-") as profile:
        log_path = Path(profile) / "chromium.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen([binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                    stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + timeout
            while not port_file.is_file() or len(port_file.read_text().split()) < 2:
                if proc.poll() is not None:
                    err = log_path.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"chromium exited with {proc.returncode} before DevTools answered:\n{err}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"chromium wrote no DevToolsActivePort within {timeout:.0f} s")
                time.sleep(0.05)
            port_text, ws_path = port_file.read_text().split()[:2]
            return asyncio.run(asyncio.wait_for(_drive(int(port_text), ws_path, page, screenshot, width), timeout))
        finally:
            if proc.poll() is None:
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)  # the group this call started (start_new_session)
                    proc.wait(timeout=5)
