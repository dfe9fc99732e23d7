"""A real headless Chromium for tests, driven over the DevTools protocol with the standard library only.

Chromium runs with `--remote-debugging-pipe` (commands on its fd 3, replies on fd 4, each a JSON message ended by
NUL) inside a new network namespace (`unshare -n`) where not even loopback is up: a page can reach nothing, and
every request it tries is still seen (`Network.requestWillBeSent`) and reported.

Example::

    with Browser() as browser:
        page = browser.open("file:///tmp/report/index.html")
        assert not page.console_errors
        browser.screenshot("docs/report.png", selector="#overview")

A page that fetches (`fetch` has no file: URLs) gets a static server: `Browser(serve=directory)` brings loopback up
in the namespace and serves `directory` there on 127.0.0.1, at `browser.served_url`; still nothing else is reachable.
This file run as a script is that server, started in the namespace, with Chromium as its child.
"""
from __future__ import annotations

import base64
import fcntl
import functools
import http.server
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Optional

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


def chromium_path() -> Optional[str]:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def no_network_prefix() -> list[str]:
    """`unshare -rn` where this machine allows network namespaces; otherwise nothing (the page's requests are still
    all seen and reported, and its Content-Security-Policy still refuses them)."""
    if shutil.which("unshare") and subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0:
        return ["unshare", "-rn"]
    return []


class PageLoad:
    """What loading a page did: every request it made (URL), and its console errors and uncaught exceptions."""

    def __init__(self, url: str):
        self.url = url
        self.requests: list[str] = []
        self.console_errors: list[str] = []


def _loopback_up() -> None:
    """`ip link set lo up` without iproute2 (the SIOCGIFFLAGS and SIOCSIFFLAGS ioctls); nothing where it is up (the
    host's, when there is no namespace)."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, siocgifflags, struct.pack("16sH14x", b"lo", 0)))[1]
        if not flags & iff_up:
            fcntl.ioctl(s, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))


def _die_with_parent() -> None:
    import ctypes
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _serve_and_run(directory: str, command: list[str]) -> int:
    """In the new namespace: loopback up, `directory` served on 127.0.0.1 (the port printed on stdout once
    listening), then `command` (Chromium, DevTools pipe on fds 3 and 4) run until it exits."""
    _loopback_up()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(http.server.SimpleHTTPRequestHandler, directory=directory))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    # Chromium dies with this process, which `Browser` kills if Chromium does not close.
    process = subprocess.Popen(command, pass_fds=(3, 4), preexec_fn=_die_with_parent, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    os.close(3)  # Chromium's alone: the test reads the end of the pipe when Chromium exits
    os.close(4)
    return process.wait()


class Browser:
    """One headless Chromium with no network (or loopback only, with `serve`), one page."""

    def __init__(self, width: int = 1280, height: int = 900, timeout: float = 60.0, serve: Optional[str] = None):
        self._size = (width, height)
        self._timeout = timeout
        self._serve = serve
        self.served_url: Optional[str] = None
        self._next_id = 0
        self._buffer = b""
        self._events: list[dict] = []
        self._session: Optional[str] = None

    def __enter__(self) -> "Browser":
        binary = chromium_path()
        if binary is None:
            raise RuntimeError("no chromium on PATH: install Debian's chromium (.ci/run does)")
        self._profile = tempfile.mkdtemp(prefix="chromium-profile-")
        commands_read, self._commands = os.pipe()
        self._replies, replies_write = os.pipe()

        def plumb():  # in the child: its fd 3 reads our commands, its fd 4 writes the replies
            commands, replies = os.dup(commands_read), os.dup(replies_write)  # out of the way of 3 and 4
            os.dup2(commands, 3)
            os.dup2(replies, 4)

        chromium = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                    "--disable-dev-shm-usage", "--hide-scrollbars", "--remote-debugging-pipe",
                    f"--user-data-dir={self._profile}", f"--window-size={self._size[0]},{self._size[1]}", "about:blank"]
        if self._serve:
            chromium = [sys.executable, os.path.abspath(__file__), os.path.abspath(self._serve), *chromium]
        self._process = subprocess.Popen(
            [*no_network_prefix(), *chromium],
            preexec_fn=plumb, pass_fds=(3, 4),  # kept open after `plumb`, which runs before fds are closed
            stdout=subprocess.PIPE if self._serve else subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        os.close(commands_read)
        os.close(replies_write)
        if self._serve:
            port = self._process.stdout.readline().strip()
            if not port.isdigit():
                raise RuntimeError(f"the static server for {self._serve} did not start")
            self.served_url = f"http://127.0.0.1:{int(port)}/"
        targets = self.send("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self._session = self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True,
                                  browser_level=True)["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=self._size[0], height=self._size[1],
                  deviceScaleFactor=1, mobile=False)
        return self

    def __exit__(self, *unused) -> None:
        try:
            self.send("Browser.close", browser_level=True)
            self._process.wait(timeout=10)
        except Exception:
            self._process.kill()
            self._process.wait()
        os.close(self._commands)
        os.close(self._replies)
        if self._process.stdout:
            self._process.stdout.close()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._replies, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, browser_level: bool = False, **params: Any) -> dict:
        """Sends one command (to the page unless `browser_level`) and returns its result; events that arrive
        meanwhile are kept for `wait_for`."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self._session and not browser_level:
            message["sessionId"] = self._session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self._timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def wait_for(self, event: str) -> dict:
        deadline = time.monotonic() + self._timeout
        while True:
            for i, message in enumerate(self._events):
                if message.get("method") == event:
                    return self._events.pop(i)
            self._events.append(self._read_message(deadline))

    def open(self, url: str) -> PageLoad:
        """Loads `url` and returns what the load did (requests, console errors), once the page has loaded."""
        self._events.clear()
        self.send("Page.navigate", url=url)
        self.wait_for("Page.loadEventFired")
        self.evaluate("1")  # a round trip, so that events of the load are in
        load = PageLoad(url)
        load.requests = self.requests()
        for message in self._events:
            method, params = message.get("method"), message.get("params", {})
            if method == "Runtime.exceptionThrown":
                load.console_errors.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                load.console_errors.append(json.dumps(params.get("args"))[:500])
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                load.console_errors.append(params["entry"].get("text", "")[:500])
        return load

    def requests(self) -> list[str]:
        """The URL of every request the page has made since `open`, those after its load event too."""
        return [message["params"]["request"]["url"] for message in self._events
                if message.get("method") == "Network.requestWillBeSent"]

    def evaluate(self, expression: str, await_promise: bool = False) -> Any:
        """The value of `expression` in the page (of the promise it gives, with `await_promise`)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def text(self, selector: str) -> str:
        return self.evaluate(f"document.querySelector({json.dumps(selector)}).innerText")

    def screenshot(self, path: str, selector: Optional[str] = None, max_height: int = 2400) -> None:
        """A PNG of the element at `selector` (at most `max_height` pixels of it), or of the viewport."""
        params: dict[str, Any] = {"format": "png"}
        if selector:
            box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                                f".getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, "
                                f"r.width, r.height]; }})()")
            params.update(captureBeyondViewport=True, clip={
                "x": box[0], "y": box[1], "width": box[2], "height": min(box[3], max_height), "scale": 1})
        data = self.send("Page.captureScreenshot", **params)["data"]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))


if __name__ == "__main__":  # python browser.py DIRECTORY CHROMIUM ARGS...: see `_serve_and_run`
    sys.exit(_serve_and_run(sys.argv[1], sys.argv[2:]))
