"""`spix-dsr worker`: the relay of outbox events and the scheduled work (app/worker/schedule.py,
every SPIX_DSR_SCHEDULE_INTERVAL_SECONDS), in a loop until told to stop. Every round ends by
linking the audit events still waiting (app/audit/chain.py).

Any number of workers may run against one PostgreSQL: they claim different events (see
app/webhooks/relay.py). On SQLite one worker serves the database. SIGTERM (or SIGINT) stops
claiming; the batch of deliveries in hand is finished (each attempt is bounded by the timeout)
and its outcomes recorded, the job chunk in hand is finished and committed, and the job's claim
is released (another worker takes it at once) before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

import app.outbox.service  # noqa: F401  (registers the outbox's commit hook)
from app.audit.chain import chain_pending
from app.audit.hashing import use_audit_key
from app.core.config import Settings
from app.core.crypto import SecretBox
from app.core.db import Database
from app.jobs.runner import JobConfig, release, run_chunk
from app.webhooks.relay import Relay, RelayConfig
from app.webhooks.signing import webhook_signer
from app.worker.schedule import ScheduleConfig, run_schedule

log = logging.getLogger("spix_dsr.worker")


class Worker:
    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.box = SecretBox(settings.resolve_subject_key(), settings.subject_key_id)
        self.signer = webhook_signer(settings.resolve_webhook_key())
        # Links audit events (its own jobs', and any an API process left unlinked).
        self.audit_key = settings.resolve_audit_key()
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        config = RelayConfig.from_settings(self.settings)
        schedule = ScheduleConfig.from_settings(self.settings)
        jobs = JobConfig.from_settings(self.settings)
        next_schedule = time.monotonic()
        async with Relay(self.database, self.box, config, signer=self.signer) as relay:
            log.info("worker started", extra={"worker_id": str(relay.worker_id)})
            while not self.stopping.is_set():
                handled = 0
                if time.monotonic() >= next_schedule:
                    next_schedule = time.monotonic() + self.settings.schedule_interval_seconds
                    try:
                        await run_schedule(self.database, schedule)
                    except Exception:
                        log.exception("scheduled work failed")
                try:
                    # One chunk of a durable job per round, between batches of deliveries.
                    if await run_chunk(self.database, relay.worker_id, jobs):
                        handled = config.batch_size  # more may wait: no pause
                except Exception:
                    log.exception("job chunk failed")  # the lease lapses; the chunk is redone
                try:
                    handled = max(handled, await relay.run_once())
                except Exception:
                    # A database outage or a bug in one batch must not end the worker; its
                    # claims lapse and the events are tried again.
                    log.exception("relay batch failed")
                    handled = 0
                try:
                    await chain_pending(self.database, self.audit_key, look_first=True)
                except Exception:
                    log.exception("linking audit events failed")  # tried again next round
                if handled < config.batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            self.stopping.wait(), self.settings.worker_poll_seconds
                        )
            try:
                await release(self.database, relay.worker_id)
            except Exception:
                log.exception("could not release the job held")  # its lease lapses instead
            log.info("worker stopped", extra={"worker_id": str(relay.worker_id)})


async def run_worker(settings: Settings) -> None:
    database = Database.from_url(settings.database_url, pool_size=4)
    worker = Worker(database, settings)
    use_audit_key(worker.audit_key)  # its jobs' events are sealed with the key it links with
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        await database.dispose()
