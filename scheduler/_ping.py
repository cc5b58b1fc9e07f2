"""``HttpPingObserver``: a dead-man's switch in the manner of healthchecks.io.

Pings go out from one background thread per observer, in the order of the events, so the
event loop never waits for the network: ``URL/start`` when a run starts, ``URL`` when it
succeeds, ``URL/fail`` (or ``URL/<exit code>`` for a command that exited non-zero) when it
fails, times out or is cancelled, with the error text as the body. Every ping of a run
carries the same ``rid`` query parameter, so a ping service can pair the start and the end of
runs that overlap.

The URL usually embeds a secret (the check's UUID or key), so only its scheme and host ever
appear in logs, errors and ``repr``.
"""

from __future__ import annotations

import http.client
import logging
import queue
import re
import threading
import urllib.parse
import uuid
from dataclasses import dataclass
from datetime import datetime

from ._enums import RunStatus
from ._errors import InvalidJobError, InvalidJobKind
from .events import RunCompleted, RunStarted, SchedulerEvent

_log = logging.getLogger("scheduler")

#: Longest body sent with a failure ping (healthchecks.io stores the first 10 KB or so).
MAX_BODY_BYTES = 10_000
#: Per attempt; a ping never delays a run, only later pings.
PING_TIMEOUT_SECONDS = 10.0
#: Extra attempts after a failed ping (none after a 4xx answer: the request itself is wrong).
PING_RETRIES = 2
#: Pause before each retry, in seconds.
RETRY_DELAYS = (1.0, 3.0)
#: Longest wait for queued pings when the observer is closed.
FLUSH_SECONDS = 5.0
#: Pings waiting for the sender at most; beyond it new ones are dropped (and logged).
MAX_QUEUED = 1000

_EXIT_CODE = re.compile(r"\bexit code (\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class _Ping:
    suffix: str
    rid: str
    body: bytes


def _exit_code(event: RunCompleted) -> int | None:
    code = getattr(event, "exit_code", None)
    if isinstance(code, int):
        return code
    found = _EXIT_CODE.search(event.error or "")
    return int(found.group(1)) if found and event.error and event.error.startswith("CommandFailed") else None


class HttpPingObserver:
    """Pings ``url`` (healthchecks.io conventions) when runs start and finish; never blocks.

    ``url`` is the check's ping URL (``http://`` or ``https://``). ``timeout`` bounds one
    attempt; a failed ping is retried twice (not after a 4xx answer) and then logged as a
    warning naming only the URL's scheme and host. :meth:`close` sends what is queued within
    ``FLUSH_SECONDS``; it also runs at interpreter exit.
    """

    def __init__(self, url: str, *, timeout: float = PING_TIMEOUT_SECONDS) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, got {type(url).__name__}")
        parts = urllib.parse.urlsplit(url.strip())
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            shown = parts.scheme or "none"
            raise InvalidJobError(
                InvalidJobKind.OTHER, f"ping URL must be http:// or https:// with a host (scheme: {shown})"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0 < timeout <= 300:
            raise InvalidJobError(
                InvalidJobKind.OTHER, f"timeout must be a number of seconds in (0, 300], got {timeout!r}"
            )
        self._parts = parts
        self._secret_texts = tuple(t for t in (url.strip(), parts.path.rstrip("/"), parts.query) if len(t) > 1)
        self.timeout = float(timeout)
        self._queue: queue.Queue[_Ping | None] = queue.Queue(MAX_QUEUED)
        self._rids: dict[tuple[str, datetime], str] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._stopped = threading.Event()
        #: Set when ``close`` gave up waiting: the sender then drops what is left, silently.
        self._abandoned = threading.Event()

    @property
    def where(self) -> str:
        """What may be shown of the URL: its scheme and host."""
        return f"{self._parts.scheme.lower()}://{self._parts.hostname}"

    def __repr__(self) -> str:
        return f"HttpPingObserver({self.where}/...)"

    # -- events (on the loop: only queue work) -------------------------------------------

    def on_event(self, event: SchedulerEvent) -> None:
        if isinstance(event, RunStarted):
            if event.attempt == 1:
                rid = str(uuid.uuid4())
                with self._lock:
                    self._rids[(event.job_id, event.scheduled_at)] = rid
                self._put(_Ping("/start", rid, b""))
        elif isinstance(event, RunCompleted):
            with self._lock:
                rid = self._rids.pop((event.job_id, event.scheduled_at), "") or str(uuid.uuid4())
            if event.status is RunStatus.SUCCESS:
                self._put(_Ping("", rid, b""))
                return
            code = _exit_code(event)
            suffix = f"/{code}" if code else "/fail"
            body = (event.error or event.status.value).encode("utf-8", "replace")[:MAX_BODY_BYTES]
            self._put(_Ping(suffix, rid, body))

    def _put(self, ping: _Ping) -> None:
        if self._closed.is_set():
            return
        self._start()
        try:
            self._queue.put_nowait(ping)
        except queue.Full:
            _log.warning("ping to %s dropped: %d pings already waiting", self.where, MAX_QUEUED)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._send_all, name="scheduler-ping", daemon=True)
                self._thread.start()
                _register_at_exit(self)

    # -- the sender thread ---------------------------------------------------------------

    def _send_all(self) -> None:
        while True:
            ping = self._queue.get()
            if ping is None or self._abandoned.is_set():
                self._stopped.set()
                return
            self._deliver(ping)

    def _deliver(self, ping: _Ping) -> None:
        error = ""
        for attempt in range(PING_RETRIES + 1):
            if attempt and self._closed.wait(RETRY_DELAYS[min(attempt - 1, len(RETRY_DELAYS) - 1)]):
                break  # closing: no more retries, the flush is bounded
            status, error = self._send_once(ping)
            if status is not None and status < 400:
                return
            if status is not None and status < 500:
                break  # a 4xx answer: the same request would fail again
        if not self._abandoned.is_set():  # after a timed-out close, its summary said it all
            _log.warning("ping %s to %s failed: %s", ping.suffix or "/", self.where, self._scrub(error))

    def _send_once(self, ping: _Ping) -> tuple[int | None, str]:
        parts = self._parts
        path = (parts.path.rstrip("/") + ping.suffix) or "/"
        query = urllib.parse.urlencode([*urllib.parse.parse_qsl(parts.query), ("rid", ping.rid)])
        factory = http.client.HTTPSConnection if parts.scheme.lower() == "https" else http.client.HTTPConnection
        connection = factory(parts.hostname or "", parts.port, timeout=self.timeout)
        try:
            headers = {"User-Agent": "scheduler-runner", "Content-Type": "text/plain; charset=utf-8"}
            connection.request("POST", f"{path}?{query}", body=ping.body, headers=headers)
            response = connection.getresponse()
            response.read(1024)
            return response.status, f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            return None, f"{type(exc).__name__}: {exc}"
        finally:
            connection.close()

    def _scrub(self, text: str) -> str:
        for secret in self._secret_texts:
            text = text.replace(secret, "...")
        return text

    # -- shutdown ------------------------------------------------------------------------

    def close(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Send what is queued, waiting at most ``timeout`` seconds; True if all went out."""
        with self._lock:
            thread = self._thread
        if self._closed.is_set():
            return self._stopped.is_set() or thread is None
        self._closed.set()
        if thread is None:
            return True
        try:
            self._queue.put_nowait(None)
        except queue.Full:  # the sender is far behind: it is abandoned (a daemon thread)
            return False
        done = self._stopped.wait(timeout)
        if not done:
            self._abandoned.set()
            _log.warning("ping to %s: %d pings not sent at shutdown", self.where, self._queue.qsize())
        return done


_OPEN: list[HttpPingObserver] = []
_AT_EXIT = threading.Lock()


def _register_at_exit(observer: HttpPingObserver) -> None:
    import atexit

    with _AT_EXIT:
        if not _OPEN:
            atexit.register(_close_all)
        _OPEN.append(observer)


def _close_all() -> None:
    for observer in list(_OPEN):
        observer.close()
