"""Headless Chromium driven over the Chrome DevTools Protocol (aiohttp's websocket client): open a page, wait
for text, read it, take a screenshot. Debian's `chromium` package, no browser download."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path


def find_chromium() -> str | None:
    """Debian's `chromium` (or another Chromium / Chrome on PATH)."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


class BrowserError(RuntimeError):
    """Chromium could not be started or did not answer."""


class Page:
    """One tab: :meth:`goto`, :meth:`wait_for_text`, :meth:`text`, :meth:`screenshot` (all async)."""

    def __init__(self, ws):
        self._ws, self._ids = ws, itertools.count(1)

    async def call(self, method: str, **params):
        msg_id = next(self._ids)
        await self._ws.send_json({"id": msg_id, "method": method, "params": params})
        while True:
            msg = await self._ws.receive_json()
            if msg.get("id") == msg_id:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def click(self, selector: str) -> bool:
        """Click the first element matching the CSS ``selector``; False when there is none."""
        return bool(await self.evaluate(
            f"(() => {{ const e = document.querySelector({selector!r}); if (e) e.click(); return !!e; }})()"))

    async def text(self) -> str:
        return await self.evaluate("document.body ? document.body.innerText : ''") or ""

    async def wait_for_text(self, *needles: str, timeout: float = 90) -> str:
        """The page's text once it contains every one of ``needles`` (the React app renders after its API calls)."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = await self.text()
            if all(n in text for n in needles):
                return text
            await asyncio.sleep(0.5)
        missing = [n for n in needles if n not in text]
        raise AssertionError(f"the page never showed {missing} within {timeout:g} s; it shows:\n{text[:3000]}")

    async def screenshot(self, path: Path) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@contextlib.asynccontextmanager
async def chromium_page(binary: str, *, width: int = 1400, height: int = 900):
    """A fresh headless Chromium (throw-away profile) and its first tab.

    Raises:
        BrowserError: Chromium exits or does not open its DevTools port within 60 s.
    """
    import aiohttp

    profile = Path(tempfile.mkdtemp(prefix="goodfit-chromium-"))
    args = [binary, "--headless=new", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            "--no-default-browser-check", "--remote-debugging-port=0", f"--user-data-dir={profile}",
            f"--window-size={width},{height}", "about:blank"]
    if os.geteuid() == 0:
        args.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root
    log = open(profile / "chromium.log", "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise BrowserError(f"{binary} did not start (exit code {proc.poll()}): "
                                   + (profile / "chromium.log").read_text()[-1500:])
            await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                tabs = [t for t in await response.json() if t.get("type") == "page"]
            if not tabs:
                raise BrowserError(f"{binary} opened no tab")
            async with session.ws_connect(tabs[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                page = Page(ws)
                await page.call("Page.enable")
                yield page
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout=30)
        log.close()
        shutil.rmtree(profile, ignore_errors=True)
