"""``GET /api/v1/leads/process``: steps 0–6 of the original ``trigger_lead_processing``.

0 in-flight guard · 1 fetch the lead from C2S · 2 Diretrix CPF lookups (phone and email,
concurrently) · 3 Work API per CPF (CPFs of leads completed in the last 60 s are skipped) ·
4 format the Portuguese message · 5 store each person · 6 post the message back to C2S.

Work counts as done only when it is done: a CPF is remembered as "recently processed" only
after its person is stored and the message is posted, so a retry after a failure at any step
redoes what failed (Work payloads fetched by the failed attempt are reused for the retry
window, so a retry does not spend Work credits twice). The in-flight marker (a
``lead_runs`` row) is closed on every exit path; a close that fails because the database is
down is kept and retried until it succeeds.

Every step logs ``Step N: <what> (<ms> ms) lead=<id>`` at INFO and feeds the step histogram; the
response bodies and messages are the original's, byte for byte, because Make.com routes on
them. Deliberate fixes are listed in docs/service.md.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from service import storage
from service.formatting import build_message
from service.health import WriteHealth
from service.metrics import LEADS_PROCESSED, STEP_CHILDREN
from service.settings import Settings
from service.upstreams import UpstreamError, Upstreams

log = logging.getLogger("service.pipeline")

Response = dict[str, Any]

# The lead of the request being processed, appended to each Step line as ``lead=<id>`` so the
# lab can attribute step times to individual requests (perflib.analysis.step_attribution).
_CURRENT_LEAD: ContextVar[str | None] = ContextVar("current_lead", default=None)


class Pipeline:
    """Holds the dedup state (in-flight leads, recently completed CPFs) for one process."""

    #: Work payloads kept for retries of leads that failed after step 3 (bounded memory).
    MAX_KEPT_PAYLOADS = 256
    #: How long a cut request waits for its run to be closed before answering anyway.
    CLOSE_WAIT_S = 2.0

    def __init__(
        self,
        settings: Settings,
        upstreams: Upstreams,
        engine: AsyncEngine,
        writes: WriteHealth | None = None,
    ) -> None:
        self.s = settings
        self.up = upstreams
        self.engine = engine
        self.writes = writes or WriteHealth(settings.health_write_failures)
        # lead_id -> wall-clock start. Check-and-set happens with no await in between, so on
        # one event loop it is atomic; the lead_runs partial unique index covers other processes.
        self.in_flight: dict[str, float] = {}
        self.recent_cpfs: dict[str, float] = {}  # cpf -> monotonic time its lead completed
        # cpf -> (monotonic time, Work payload) of CPFs whose lead did not complete yet
        self.payloads: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        # run_id -> (lead_id, final status, values): run closes the database refused so far
        self.unreleased: dict[uuid.UUID, tuple[str, str, dict[str, Any]]] = {}
        self._releaser: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Future[None]] = set()  # closes still running after a cut
        # A marker older than this cannot belong to a live request: the request timeout has
        # cut it (docs/service.md, "The in-flight guard").
        self.stale_after_s = settings.request_timeout_s + settings.in_flight_margin_s

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

    def _mark_done(self, cpfs: list[str]) -> None:
        """The lead's people are stored and its message posted: only now dedup its CPFs."""
        now = time.monotonic()
        for cpf in cpfs:
            self.recent_cpfs[cpf] = now
            self.payloads.pop(cpf, None)
        if len(self.recent_cpfs) > 4096:  # bounded memory under long load runs
            cutoff = now - self.s.recent_cpf_window_s
            self.recent_cpfs = {k: v for k, v in self.recent_cpfs.items() if v >= cutoff}

    def _kept_payload(self, cpf: str, now: float) -> dict[str, Any] | None:
        kept = self.payloads.get(cpf)
        if kept is None or now - kept[0] >= self.s.recent_cpf_window_s:
            return None
        return kept[1]

    def _keep_payload(self, cpf: str, payload: dict[str, Any]) -> None:
        self.payloads[cpf] = (time.monotonic(), payload)
        self.payloads.move_to_end(cpf)
        while len(self.payloads) > self.MAX_KEPT_PAYLOADS:
            self.payloads.popitem(last=False)

    async def _finish(
        self, run_id: uuid.UUID | None, lead_id: str, status: str, **values: Any
    ) -> None:
        """Record the run's outcome. A failure never fails the request, but a run that holds
        the in-flight marker is kept and closed later, once the database answers again."""
        try:
            await storage.record_lead_run(
                self.engine, lead_id=lead_id, status=status, run_id=run_id, **values
            )
            self.writes.ok()
        except Exception as exc:  # noqa: BLE001
            self.writes.failed(exc)
            log.warning("could not record lead run for %s: %s", lead_id, type(exc).__name__)
            if run_id is not None:
                self._defer_release(run_id, lead_id, status, values)

    # --- markers the database refused to close --------------------------------------------

    def _defer_release(
        self, run_id: uuid.UUID, lead_id: str, status: str, values: dict[str, Any]
    ) -> None:
        self.unreleased[run_id] = (lead_id, status, values)
        if self._releaser is None or self._releaser.done():
            self._releaser = asyncio.get_running_loop().create_task(self._release_loop())

    async def _release_loop(self) -> None:
        delay = 0.25
        while self.unreleased:
            await asyncio.sleep(delay)
            await self.release_pending()
            delay = min(delay * 2, 5.0)

    async def release_pending(self, lead_id: str | None = None) -> int:
        """Close the runs whose close failed (all, or one lead's); stops at the first error."""
        done = 0
        for run_id, (lead, status, values) in list(self.unreleased.items()):
            if lead_id is not None and lead != lead_id:
                continue
            try:
                await storage.record_lead_run(
                    self.engine, lead_id=lead, status=status, run_id=run_id, **values
                )
            except Exception as exc:  # noqa: BLE001 - still down: the loop tries again
                log.debug("run %s still not closed: %s", run_id, type(exc).__name__)
                break
            self.writes.ok()
            self.unreleased.pop(run_id, None)
            done += 1
        if done:
            log.info("closed %d lead run(s) left open by a database outage", done)
        return done

    async def aclose(self) -> None:
        """At shutdown: one last attempt to close deferred runs, then stop the retry task."""
        if self.unreleased:
            try:
                async with asyncio.timeout(2):
                    await self.release_pending()
            except TimeoutError:
                pass
        if self._releaser is not None:
            self._releaser.cancel()

    # --- the request -------------------------------------------------------------------------

    async def process(self, lead_id: str) -> Response:
        token = _CURRENT_LEAD.set(lead_id)
        try:
            return await self._process(lead_id)
        finally:
            _CURRENT_LEAD.reset(token)

    async def _duplicate(
        self, lead_id: str, started: float, now: float, timings: dict[str, float]
    ) -> Response:
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

    async def _process(self, lead_id: str) -> Response:
        timings: dict[str, float] = {}
        deadline = time.monotonic() + self.s.pipeline_deadline_s

        # Step 0: atomic duplicate guard — in-process map, then the lead_runs unique index
        t0 = time.perf_counter()
        now = time.time()
        started = self.in_flight.get(lead_id)
        if started is not None:
            self._observe_step(0, "Checking for duplicate requests", t0, timings)
            return await self._duplicate(lead_id, started, now, timings)
        self.in_flight[lead_id] = now  # no await since the get(): atomic on this loop
        run_id = uuid.uuid4()
        closed = False  # True once the run's outcome is recorded (or handed to the retrier)
        try:
            try:
                if self.unreleased:  # our own marker for this lead, left by a database outage
                    await self.release_pending(lead_id)
                await storage.begin_lead_run(
                    self.engine, lead_id, run_id=run_id, stale_after_s=self.stale_after_s
                )
                self.writes.ok()
            except storage.LeadInFlightError as exc:
                if exc.run_id not in self.unreleased:  # another process holds it
                    closed = True
                    self._observe_step(0, "Checking for duplicate requests", t0, timings)
                    return await self._duplicate(lead_id, exc.started_at or now, now, timings)
                # Our own finished run, whose close the database still refuses: it must not
                # block its lead. Go on guarded by the in-process map; this run's outcome is
                # recorded as a row of its own.
                log.info("lead %s: previous run still to be closed, proceeding", lead_id)
            except Exception as exc:  # noqa: BLE001 - no guard, no storage: fail fast
                closed = True
                self.writes.failed(exc)
                msg = f"Database unavailable: {storage.error_reason(exc)}"
                log.error("%s (lead %s)", msg, lead_id)
                # The insert may have committed before the connection broke: close it later.
                self._defer_release(run_id, lead_id, "failed", {"error": msg})
                self._observe_step(0, "Checking for duplicate requests", t0, timings)
                LEADS_PROCESSED.labels("db_unavailable").inc()
                return {"success": False, "message": msg, "lead_id": lead_id}
            self._observe_step(0, "Checking for duplicate requests", t0, timings)
            outcome = await self._run(lead_id, run_id, timings, deadline)
            closed = True  # every return of _run has recorded its outcome
            LEADS_PROCESSED.labels(outcome.pop("_outcome")).inc()
            return outcome
        except BaseException as exc:
            if not closed:
                # Cancelled by the request timeout, or an unexpected error: close the run in a
                # task the cancellation cannot reach. A stalled database must not hold the
                # answer (the 504) for long: after CLOSE_WAIT_S the task finishes on its own,
                # and a close that fails is deferred like any other.
                error = (
                    "request cancelled"
                    if isinstance(exc, asyncio.CancelledError)
                    else f"internal error ({type(exc).__name__})"
                )
                finish = asyncio.ensure_future(
                    self._finish(run_id, lead_id, "failed", step_ms=timings, error=error)
                )
                self._closing.add(finish)
                finish.add_done_callback(self._closing.discard)
                await asyncio.wait({finish}, timeout=self.CLOSE_WAIT_S)
            raise
        finally:
            self.in_flight.pop(lead_id, None)

    async def _fail(
        self, run_id: uuid.UUID, lead_id: str, outcome: str, msg: str, **values: Any
    ) -> Response:
        await self._finish(run_id, lead_id, "failed", error=msg, **values)
        return {"success": False, "message": msg, "lead_id": lead_id, "_outcome": outcome}

    async def _run(
        self, lead_id: str, run_id: uuid.UUID, timings: dict[str, float], deadline: float
    ) -> Response:
        # Step 1: the lead
        try:
            with self._step(1, "Fetching lead from C2S", timings):
                customer = await self.up.get_lead(lead_id, deadline=deadline)
        except UpstreamError as exc:
            msg = f"Failed to fetch lead from C2S: {exc}"
            log.error("%s (lead %s)", msg, lead_id)
            return await self._fail(run_id, lead_id, "fetch_failed", msg, step_ms=timings)

        # Step 2: Diretrix, phone and email at the same time
        async def lookup(kind: str, value: str) -> str | None | UpstreamError:
            if not value:
                return None
            try:
                if kind == "phone":
                    return await self.up.cpf_by_phone(value, deadline=deadline)
                return await self.up.cpf_by_email(value, deadline=deadline)
            except UpstreamError as exc:
                log.warning("Diretrix %s lookup failed: %s", kind, exc)
                return exc

        with self._step(2, "Using Diretrix to find CPF", timings):
            phone_cpf, email_cpf = await asyncio.gather(
                lookup("phone", customer.phone), lookup("email", customer.email)
            )
        # A failed lookup (not a "not found") leaves the lead's people unknown: enriching
        # only the other one would post an incomplete message and call the lead done.
        for found in (phone_cpf, email_cpf):
            if isinstance(found, UpstreamError):
                msg = f"Failed to look up CPF with Diretrix: {found}"
                return await self._fail(run_id, lead_id, "lookup_failed", msg, step_ms=timings)
        assert not isinstance(phone_cpf, UpstreamError)
        assert not isinstance(email_cpf, UpstreamError)
        if phone_cpf and email_cpf and phone_cpf == email_cpf:
            cpfs, same_person = [phone_cpf], True
        elif phone_cpf and email_cpf:
            log.warning("phone and email belong to DIFFERENT people (lead %s)", lead_id)
            cpfs, same_person = [phone_cpf, email_cpf], False
        elif phone_cpf or email_cpf:
            cpfs, same_person = [phone_cpf or email_cpf], False  # type: ignore[list-item]
        else:
            msg = "Could not find CPF from phone or email"
            return await self._fail(run_id, lead_id, "no_cpf", msg, step_ms=timings)
        facts: dict[str, Any] = {"cpfs": cpfs, "same_person": same_person}

        # Step 3: Work API, skipping CPFs whose lead completed within the window
        now = time.monotonic()
        to_process = [c for c in cpfs if not self._recently_enriched(c, now)]
        if not to_process:
            log.info("all CPFs of lead %s recently processed, skipping enrichment", lead_id)
            await self._finish(
                run_id,
                lead_id,
                "deduplicated",
                step_ms=timings,
                entities_stored=0,
                message_sent=False,
                **facts,
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
        failed: list[UpstreamError] = []  # transient failures: a retry may succeed
        with self._step(
            3,
            f"Enriching {len(to_process)} CPF{'s' if len(to_process) != 1 else ''} with Work API",
            timings,
        ):
            for cpf in to_process:
                kept = self._kept_payload(cpf, now)
                if kept is not None:  # fetched by an earlier attempt that failed later on
                    pairs.append((cpf, kept))
                    continue
                try:
                    payload = await self.up.work_cpf(cpf, deadline=deadline)
                except UpstreamError as exc:
                    log.error("failed to enrich a CPF of lead %s: %s", lead_id, exc)
                    if exc.status != 404:  # 404: Work does not know the CPF (permanent)
                        failed.append(exc)
                    continue
                self._keep_payload(cpf, payload)
                pairs.append((cpf, payload))
        if not pairs:
            msg = "Failed to enrich any CPFs"
            return await self._fail(run_id, lead_id, "enrich_failed", msg, step_ms=timings, **facts)
        if failed:
            msg = f"Failed to enrich {len(failed)} of {len(to_process)} CPFs: {failed[0]}"
            return await self._fail(run_id, lead_id, "enrich_failed", msg, step_ms=timings, **facts)

        # Step 4: the message
        with self._step(4, "Formatting enriched data for C2S", timings):
            body = build_message([p for _, p in pairs], same_person, self.s.income_multiplier)

        # Step 5: the database, one transaction per person; a failure fails the lead before
        # anything is posted, so the retry posts the message exactly once
        stored = 0
        store_error: Exception | None = None
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
                except Exception as exc:  # noqa: BLE001
                    self.writes.failed(exc)
                    store_error = exc
                    log.error(
                        "failed to store a person of lead %s: %s", lead_id, type(exc).__name__
                    )
                    break
                self.writes.ok()
                stored += 1
        if store_error is not None:
            msg = (
                "Enriched data but failed to store it in database: "
                f"{storage.error_reason(store_error)}"
            )
            return await self._fail(
                run_id,
                lead_id,
                "store_failed",
                msg,
                step_ms=timings,
                entities_stored=stored,
                message_sent=False,
                **facts,
            )

        # Step 6: back to C2S
        try:
            with self._step(6, "Sending enriched data to C2S", timings):
                await self.up.create_message(lead_id, body, deadline=deadline)
        except UpstreamError as exc:
            msg = f"Enriched data but failed to send to C2S: {exc}"
            log.error("%s (lead %s)", msg, lead_id)
            return await self._fail(
                run_id,
                lead_id,
                "send_failed",
                msg,
                step_ms=timings,
                entities_stored=stored,
                message_sent=False,
                **facts,
            )

        self._mark_done([cpf for cpf, _ in pairs])
        await self._finish(
            run_id,
            lead_id,
            "completed",
            step_ms=timings,
            entities_stored=stored,
            message_sent=True,
            **facts,
        )
        return {
            "success": True,
            "message": f"Successfully processed and enriched lead. Stored {stored} entities in database.",
            "lead_id": lead_id,
            "cpfs_processed": cpfs,
            "entities_stored": stored,
            "_outcome": "completed",
        }
