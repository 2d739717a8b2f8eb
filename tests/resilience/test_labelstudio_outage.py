"""Label Studio unreachable in the middle of a campaign round: the loop waits with exponential backoff, retries,
and catches up once it is back, with every answer pulled once and every settled task withdrawn.

The campaign reaches the real Label Studio through :class:`Gate`, a TCP relay on its own loopback port: closed,
nothing listens there and connections are refused, exactly as when the server is stopped; opened again on the
same port, it relays. The gate opens from the loop's own (recorded) sleep, so the outage lasts a fixed number of
retries and nothing waits on the clock.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from active_learning.labelers import QueueLabeler
from active_learning.loop import Campaign, CampaignConfig
from active_learning.store import Store
from labeling import LabelStudioClient, ProjectSettings, signup_volunteer
from labeling.convert import states_to_result
from labeling.queue import LabelStudioQueue
from tests.live_services import LiveLabelStudio, free_port

pytestmark = pytest.mark.integration

DATES = (dt.date(2017, 2, 3), dt.date(2017, 4, 1), dt.date(2017, 6, 14), dt.date(2017, 8, 20))
SECRET = b"outage-pseudonym-key"
AGREED = ("intact", "intact", "destroyed", "destroyed")


class Gate:
    """A TCP relay from a loopback port to ``upstream`` that can refuse connections (closed) and recover."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port))  # SO_REUSEADDR: the same port again
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        """Stop listening and cut every relayed connection: the port now refuses, like a stopped server."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in the relay thread
            listener.close()
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._open |= {client, server}
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()


@pytest.fixture
def gate(label_studio: LiveLabelStudio) -> Iterator[Gate]:
    host, _, port = label_studio.url.removeprefix("http://").rstrip("/").partition(":")
    relay = Gate((host, int(port)))
    relay.open()
    try:
        yield relay
    finally:
        relay.close()


def test_label_studio_down_mid_round_is_waited_for_with_backoff_and_caught_up(
    label_studio: LiveLabelStudio, gate: Gate, tmp_path: Path
) -> None:
    admin = label_studio.client
    pid = admin.create_project(ProjectSettings(title=f"outage-{uuid.uuid4().hex[:8]}", overlap=5))
    volunteers: list[LabelStudioClient] = []
    # the campaign's client goes through the gate; its own quick retries sleep for nothing
    through_gate = LabelStudioClient(
        gate.url, label_studio.server.config.api_token, retries=2, sleep=lambda s: None
    )
    try:
        invite = admin.invite_token()
        for i in range(2):
            email = f"out{i}-{uuid.uuid4().hex[:6]}@striketracker.test"
            token = signup_volunteer(label_studio.url, invite, email, f"Outage-{i}-pass-7q")
            volunteers.append(LabelStudioClient(label_studio.url, token))
        store = Store.open(f"sqlite:///{tmp_path / 'store.db'}")
        Campaign.register_buildings(store, ["A", "B", "C"], DATES)
        labeler = QueueLabeler(
            LabelStudioQueue(through_gate, pid, secret=SECRET, public_base_url="http://127.0.0.1:9")
        )
        waits: list[float] = []

        def sleep(seconds: float) -> None:  # the loop's backoff: the gate reopens on every second wait
            waits.append(seconds)
            if len(waits) % 2 == 0:
                gate.open()

        config = CampaignConfig(name="out", seed_size=3, batch_size=3, confidence=0.6, random_share=0.0)
        campaign = Campaign(store, labeler, config, sleep=sleep)
        campaign.run_round()  # the seed batch, Label Studio up
        tasks = {b: t for t, (b, _) in admin.task_inventory(pid).items()}
        assert set(tasks) == {"A", "B", "C"} and waits == []
        for v in volunteers:
            v.submit(tasks["A"], states_to_result(AGREED))
            v.submit(tasks["B"], states_to_result(AGREED))
        volunteers[0].submit(tasks["C"], states_to_result(("intact",) * 4))

        pull = labeler.pull

        def pull_then_outage(cursor: str | None) -> Any:  # down again right after the pull: mid-round
            batch = pull(cursor)
            gate.close()
            return batch

        labeler.pull = pull_then_outage  # type: ignore[method-assign]
        gate.close()  # down when the round starts
        second = campaign.run_round()

        assert waits == [2.0, 4.0, 2.0, 4.0]  # pull: twice, doubling; withdraw: the same again
        assert second.summary["retries_pull"] == 2 and second.summary["retries_withdraw"] == 2
        assert second.pull["received"] == 5 and len(store.annotations()) == 5  # every answer, once
        assert {b for b, _ in admin.task_inventory(pid).values()} == {"C"}  # settled A and B withdrawn
        assert {r.status for r in store.requests("out", building_id="A")} == {"answered"}
    finally:
        through_gate.close()
        for v in volunteers:
            v.close()
        admin.delete_project(pid)
