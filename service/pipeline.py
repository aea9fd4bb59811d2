"""``GET /api/v1/leads/process``: steps 0–6 of the original ``trigger_lead_processing``.

0 in-flight guard · 1 fetch the lead from C2S · 2 Diretrix CPF lookups (phone and email,
concurrently) · 3 Work API per CPF (CPFs enriched in the last 60 s are skipped) · 4 format
the Portuguese message · 5 store each person · 6 post the message back to C2S.

Every step logs ``Step N: <what> (<ms> ms) lead=<id>`` at INFO and feeds the step histogram; the
response bodies and messages are the original's, byte for byte, because Make.com routes on
them. Deliberate fixes are listed in docs/service.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service import storage
from service.formatting import build_message
from service.metrics import LEADS_PROCESSED, STEP_CHILDREN
from service.settings import Settings
from service.upstreams import UpstreamError, Upstreams

log = logging.getLogger("service.pipeline")

Response = dict[str, Any]

# The lead of the request being processed, appended to each Step line as ``lead=<id>`` so the
# lab can attribute step times to individual requests (perflib.analysis.step_attribution).
_CURRENT_LEAD: ContextVar[str | None] = ContextVar("current_lead", default=None)


class Pipeline:
    """Holds the dedup state (in-flight leads, recently enriched CPFs) for one process."""

    def __init__(self, settings: Settings, upstreams: Upstreams, engine: AsyncEngine) -> None:
        self.s = settings
        self.up = upstreams
        self.engine = engine
        # lead_id -> wall-clock start. Check-and-set happens with no await in between, so on
        # one event loop it is atomic; the lead_runs partial unique index covers other processes.
        self.in_flight: dict[str, float] = {}
        self.recent_cpfs: dict[str, float] = {}  # cpf -> monotonic time of its last enrichment

    # --- helpers -----------------------------------------------------------------------------

    @contextmanager
    def _step(self, n: int, what: str, timings: dict[str, float]) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self._observe_step(n, what, t0, timings)

    @staticmethod
    def _observe_step(n: int, what: str, t0: float, timings: dict[str, float]) -> None:
        """One ``Step N: <what> (<ms> ms)`` line, one histogram sample, one step_ms entry."""
        dt = time.perf_counter() - t0
        timings[str(n)] = round(dt * 1000, 3)
        STEP_CHILDREN[str(n)].observe(dt)
        log.info("Step %d: %s (%d ms) lead=%s", n, what, round(dt * 1000), _CURRENT_LEAD.get())

    def _recently_enriched(self, cpf: str, now: float) -> bool:
        t = self.recent_cpfs.get(cpf)
        return t is not None and now - t < self.s.recent_cpf_window_s

    def _mark_enriched(self, cpf: str) -> None:
        now = time.monotonic()
        self.recent_cpfs[cpf] = now
        if len(self.recent_cpfs) > 4096:  # bounded memory under long load runs
            cutoff = now - self.s.recent_cpf_window_s
            self.recent_cpfs = {k: v for k, v in self.recent_cpfs.items() if v >= cutoff}

    async def _finish(
        self, run_id: uuid.UUID | None, lead_id: str, status: str, **values: Any
    ) -> None:
        """Record the run's outcome; bookkeeping failures are logged, never fail the request."""
        try:
            await storage.record_lead_run(
                self.engine, lead_id=lead_id, status=status, run_id=run_id, **values
            )
        except Exception as exc:  # noqa: BLE001
            log.warning("could not record lead run for %s: %s", lead_id, type(exc).__name__)

    # --- the request -------------------------------------------------------------------------

    async def process(self, lead_id: str) -> Response:
        token = _CURRENT_LEAD.set(lead_id)
        try:
            return await self._process(lead_id)
        finally:
            _CURRENT_LEAD.reset(token)

    async def _process(self, lead_id: str) -> Response:
        timings: dict[str, float] = {}
        deadline = time.monotonic() + self.s.pipeline_deadline_s

        # Step 0: atomic duplicate guard — in-process map, then the lead_runs unique index
        t0 = time.perf_counter()
        now = time.time()
        started = self.in_flight.get(lead_id)
        run_id: uuid.UUID | None = None
        if started is None:
            self.in_flight[lead_id] = now  # no await since the get(): atomic on this loop
            try:
                run_id = await storage.begin_lead_run(self.engine, lead_id)
            except storage.LeadInFlightError as exc:
                started = exc.started_at or now  # another process holds it
                self.in_flight.pop(lead_id, None)
            except Exception as exc:  # noqa: BLE001 - the DB is optional for the answer
                log.warning("lead run not recorded (database: %s)", type(exc).__name__)
            except BaseException:  # cancelled while inserting the run
                self.in_flight.pop(lead_id, None)
                raise
        self._observe_step(0, "Checking for duplicate requests", t0, timings)
        if started is not None:
            secs = max(int(now - started), 0)
            log.warning("duplicate request blocked for lead %s (started %d s ago)", lead_id, secs)
            LEADS_PROCESSED.labels("duplicate").inc()
            await self._finish(None, lead_id, "duplicate", step_ms=timings)
            return {
                "success": True,
                "message": f"Lead already being processed (started {secs} seconds ago). "
                "Duplicate request blocked.",
                "lead_id": lead_id,
                "duplicate_request": True,
            }
        try:
            outcome = await self._run(lead_id, run_id, timings, deadline)
            LEADS_PROCESSED.labels(outcome.pop("_outcome")).inc()
            return outcome
        except asyncio.CancelledError:
            # Cut by the request timeout: close the run in a task the cancellation cannot reach.
            finish = asyncio.ensure_future(
                self._finish(run_id, lead_id, "failed", step_ms=timings, error="request cancelled")
            )
            await asyncio.shield(finish)
            raise
        finally:
            self.in_flight.pop(lead_id, None)

    async def _run(
        self, lead_id: str, run_id: uuid.UUID | None, timings: dict[str, float], deadline: float
    ) -> Response:
        # Step 1: the lead
        try:
            with self._step(1, "Fetching lead from C2S", timings):
                customer = await self.up.get_lead(lead_id, deadline=deadline)
        except UpstreamError as exc:
            msg = f"Failed to fetch lead from C2S: {exc}"
            log.error("%s (lead %s)", msg, lead_id)
            await self._finish(run_id, lead_id, "failed", step_ms=timings, error=msg)
            return {
                "success": False,
                "message": msg,
                "lead_id": lead_id,
                "_outcome": "fetch_failed",
            }

        # Step 2: Diretrix, phone and email at the same time
        async def lookup(kind: str, value: str) -> str | None:
            if not value:
                return None
            try:
                if kind == "phone":
                    return await self.up.cpf_by_phone(value, deadline=deadline)
                return await self.up.cpf_by_email(value, deadline=deadline)
            except UpstreamError as exc:  # the original swallowed these too (.ok())
                log.warning("Diretrix %s lookup failed: %s", kind, exc)
                return None

        with self._step(2, "Using Diretrix to find CPF", timings):
            phone_cpf, email_cpf = await asyncio.gather(
                lookup("phone", customer.phone), lookup("email", customer.email)
            )
        if phone_cpf and email_cpf and phone_cpf == email_cpf:
            cpfs, same_person = [phone_cpf], True
        elif phone_cpf and email_cpf:
            log.warning("phone and email belong to DIFFERENT people (lead %s)", lead_id)
            cpfs, same_person = [phone_cpf, email_cpf], False
        elif phone_cpf or email_cpf:
            cpfs, same_person = [phone_cpf or email_cpf], False  # type: ignore[list-item]
        else:
            msg = "Could not find CPF from phone or email"
            await self._finish(run_id, lead_id, "failed", step_ms=timings, error=msg)
            return {"success": False, "message": msg, "lead_id": lead_id, "_outcome": "no_cpf"}

        # Step 3: Work API, skipping CPFs enriched within the window
        now = time.monotonic()
        to_process = [c for c in cpfs if not self._recently_enriched(c, now)]
        if not to_process:
            log.info("all CPFs of lead %s recently processed, skipping enrichment", lead_id)
            await self._finish(
                run_id,
                lead_id,
                "deduplicated",
                step_ms=timings,
                cpfs=cpfs,
                same_person=same_person,
                entities_stored=0,
                message_sent=False,
            )
            return {
                "success": True,
                "message": "CPFs already recently processed (deduplication)",
                "lead_id": lead_id,
                "cpfs_processed": cpfs,
                "entities_stored": 0,
                "_outcome": "cpf_deduplicated",
            }
        pairs: list[tuple[str, dict[str, Any]]] = []  # each CPF with its own payload
        with self._step(
            3,
            f"Enriching {len(to_process)} CPF{'s' if len(to_process) != 1 else ''} with Work API",
            timings,
        ):
            for cpf in to_process:
                try:
                    pairs.append((cpf, await self.up.work_cpf(cpf, deadline=deadline)))
                    self._mark_enriched(cpf)
                except UpstreamError as exc:
                    log.error("failed to enrich a CPF of lead %s: %s", lead_id, exc)
        if not pairs:
            msg = "Failed to enrich any CPFs"
            await self._finish(
                run_id,
                lead_id,
                "failed",
                step_ms=timings,
                cpfs=cpfs,
                same_person=same_person,
                error=msg,
            )
            return {
                "success": False,
                "message": msg,
                "lead_id": lead_id,
                "_outcome": "enrich_failed",
            }

        # Step 4: the message
        with self._step(4, "Formatting enriched data for C2S", timings):
            body = build_message([p for _, p in pairs], same_person, self.s.income_multiplier)

        # Step 5: the database (per person; a failure is logged and does not fail the request)
        stored = 0
        with self._step(
            5,
            f"Storing {len(pairs)} {'people' if len(pairs) != 1 else 'person'} in database",
            timings,
        ):
            for cpf, payload in pairs:
                try:
                    await storage.store_person(
                        self.engine,
                        cpf,
                        payload,
                        lead_id=lead_id,
                        multiplier=self.s.income_multiplier,
                    )
                    stored += 1
                except Exception as exc:  # noqa: BLE001
                    log.error(
                        "failed to store a person of lead %s: %s", lead_id, type(exc).__name__
                    )

        # Step 6: back to C2S
        try:
            with self._step(6, "Sending enriched data to C2S", timings):
                await self.up.create_message(lead_id, body, deadline=deadline)
        except UpstreamError as exc:
            msg = f"Enriched data but failed to send to C2S: {exc}"
            log.error("%s (lead %s)", msg, lead_id)
            await self._finish(
                run_id,
                lead_id,
                "failed",
                step_ms=timings,
                cpfs=cpfs,
                same_person=same_person,
                entities_stored=stored,
                message_sent=False,
                error=msg,
            )
            return {"success": False, "message": msg, "lead_id": lead_id, "_outcome": "send_failed"}

        await self._finish(
            run_id,
            lead_id,
            "completed",
            step_ms=timings,
            cpfs=cpfs,
            same_person=same_person,
            entities_stored=stored,
            message_sent=True,
        )
        return {
            "success": True,
            "message": f"Successfully processed and enriched lead. Stored {stored} entities in database.",
            "lead_id": lead_id,
            "cpfs_processed": cpfs,
            "entities_stored": stored,
            "_outcome": "completed",
        }
