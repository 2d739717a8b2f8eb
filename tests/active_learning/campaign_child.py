"""A campaign loop process for the crash tests: runs rounds until the store holds ``--rounds`` finished ones,
and (with ``--kill-at``) kills itself with SIGKILL at a chosen point.

Kill points: ``commit:N`` before the N-th database commit, ``committed:N`` right after it, ``platform:N`` right
after the simulated platform wrote its state for the N-th time (a push or pull applied on the platform whose
answer never reaches the loop).

    python -m tests.active_learning.campaign_child --store URL --platform FILE --rounds 3 [--kill-at commit:7]
"""

from __future__ import annotations

import argparse
import os
import signal
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.orm import Session

from active_learning.loop import Campaign
from tests.active_learning.campaign_kit import FakeModel, config, open_store, pool_labeler, truths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--platform", type=Path, required=True)
    parser.add_argument("--rounds", type=int, required=True)
    parser.add_argument("--kill-at", default="")
    args = parser.parse_args(argv)
    ts = truths(24)
    store = open_store(args.store, ts)
    labeler = pool_labeler(ts, state_path=args.platform)
    kind, _, number = args.kill_at.partition(":")
    target = int(number) if number else -1
    seen = {"commit": 0, "committed": 0, "platform": 0}

    def die(what: str) -> None:
        seen[what] += 1
        if kind == what and seen[what] == target:
            os.kill(os.getpid(), signal.SIGKILL)

    event.listen(store.engine, "commit", lambda conn: die("commit"))
    event.listen(Session, "after_commit", lambda session: die("committed"))
    save = labeler._save

    def save_then_maybe_die() -> None:
        save()
        die("platform")

    labeler._save = save_then_maybe_die  # type: ignore[method-assign]
    model = FakeModel(ts, accuracy=0.85, state_path=args.platform.with_name("registry.json"))
    campaign = Campaign(
        store, labeler, config(seed_size=8, batch_size=6), model=model, heartbeat_s=0.5, stale_after_s=5
    )
    while len([r for r in store.rounds("t") if r.finished_at is not None]) < args.rounds:
        report = campaign.run_round()
        print(f"round {report.round_id} finished at commit {seen['committed']}", flush=True)
        if report.done:
            break
    print(f"finished {args.rounds} rounds; champion {model.champion()}; commits {seen}")


if __name__ == "__main__":
    main()
