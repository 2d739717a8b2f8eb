"""The campaign lock: one loop process per campaign, on SQLite and PostgreSQL alike.

The lock is a row of the store's ``campaign_locks`` table holding a token unique to the process run, its pid and
host, and a heartbeat. It is taken atomically by insert-or-ignore; a second process finds the row and refuses
with :class:`CampaignLockedError` naming the holder and the fix. A holder is *stale* when its heartbeat is older
than ``stale_after_s`` or, on the same host, when its pid no longer runs (a loop killed with ``kill -9``); a
stale holder is replaced by compare-and-swap on its token, so two processes racing for a stale lock cannot both
win. While held, a daemon thread refreshes the heartbeat; if the lock was taken over meanwhile,
:meth:`CampaignLock.check` raises :class:`LockLostError` and the loop stops before writing anything else.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from types import TracebackType

from active_learning.errors import CampaignError
from active_learning.store import LockRecord, Store

__all__ = ["CampaignLock", "CampaignLockedError", "LockLostError", "pid_alive"]


class CampaignLockedError(CampaignError):
    """Another live process holds the campaign's lock."""


class LockLostError(CampaignError):
    """The lock was taken over by another process while this one held it."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid runs on this host (signal 0 probes without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CampaignLock:
    """Hold a campaign's lock for the duration of a ``with`` block.

    Args:
        store: the store of record.
        campaign: the campaign name.
        stale_after_s: a holder whose heartbeat is older than this is taken over.
        heartbeat_s: how often the holder refreshes its heartbeat (must be well below ``stale_after_s``).
    """

    def __init__(
        self, store: Store, campaign: str, *, stale_after_s: float = 600.0, heartbeat_s: float = 30.0
    ) -> None:
        if heartbeat_s <= 0 or stale_after_s <= 2 * heartbeat_s:
            raise CampaignError(
                f"stale_after_s ({stale_after_s}) must exceed twice heartbeat_s ({heartbeat_s}) > 0, or a live "
                "holder would look stale"
            )
        self.store = store
        self.campaign = campaign
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.token = uuid.uuid4().hex
        self.pid = os.getpid()
        self.host = socket.gethostname()
        self.took_over: LockRecord | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost = False

    def acquire(self) -> CampaignLock:
        """Take the lock, or take over a stale holder.

        Raises:
            CampaignLockedError: a live process holds it.
        """
        for _ in range(3):  # the row may be released or taken over between our reads: look again
            if self.store.try_lock(self.campaign, self.token, self.pid, self.host):
                break
            holder = self.store.lock(self.campaign)
            if holder is None:
                continue
            if not self._stale(holder):
                raise CampaignLockedError(self._message(holder))
            if self.store.take_over_lock(self.campaign, holder, self.token, self.pid, self.host):
                self.took_over = holder
                break
        else:
            raise CampaignLockedError(self._message(self.store.lock(self.campaign)))
        self._start_heartbeat()
        return self

    def _stale(self, holder: LockRecord) -> bool:
        age = (dt.datetime.now(dt.UTC) - holder.heartbeat_at).total_seconds()
        if age > self.stale_after_s:
            return True
        return holder.host == self.host and holder.pid != self.pid and not pid_alive(holder.pid)

    def _message(self, holder: LockRecord | None) -> str:
        if holder is None:
            return (
                f"campaign {self.campaign!r}: the lock changed hands while taking it; run the command again"
            )
        age = (dt.datetime.now(dt.UTC) - holder.heartbeat_at).total_seconds()
        return (
            f"campaign {self.campaign!r} is being run by another loop process: pid {holder.pid} on host "
            f"{holder.host!r}, since {holder.acquired_at:%Y-%m-%d %H:%M:%S} UTC, last heartbeat {age:.0f} s ago "
            f"(store {self.store.url}). Wait for it to finish (`striketracker campaign status` shows its round); "
            f"if that process is gone for good, run `striketracker campaign unlock --name {self.campaign}` or wait "
            f"{max(0.0, self.stale_after_s - age):.0f} s until its lock goes stale"
        )

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lock-{self.campaign}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                if not self.store.touch_lock(self.campaign, self.token):
                    self._lost = True
                    return
            except Exception:  # a missed heartbeat is retried; staleness has a wide margin
                continue

    def check(self) -> None:
        """Raise if the lock was taken over (the loop calls this between steps).

        Raises:
            LockLostError: another process took the lock over.
        """
        if self._lost or not self.store.touch_lock(self.campaign, self.token):
            self._lost = True
            holder = self.store.lock(self.campaign)
            who = f"pid {holder.pid} on {holder.host!r}" if holder else "nobody (it was unlocked)"
            raise LockLostError(
                f"campaign {self.campaign!r}: this process lost its lock to {who} (it looked stale: no heartbeat "
                f"for {self.stale_after_s:.0f} s, or it was unlocked by hand); stopping before writing anything "
                "else. The round is resumed by whoever holds the lock"
            )

    def release(self) -> None:
        """Stop the heartbeat and release the lock if still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not self._lost:
            self.store.release_lock(self.campaign, self.token)

    def __enter__(self) -> CampaignLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
