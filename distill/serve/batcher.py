"""Request batching for `distillery serve`: a bounded queue and one worker thread over the model.

Requests wait in a queue of at most `max_queue` requests (a full queue is the server's 429).
The worker takes the oldest request, adds every other waiting request with the same sampling
settings (temperature, top-p, top-k) until the batch holds `max_batch` sequences, and decodes
them together: the engine gives every row its own seed, token limit and stop strings, drops rows
as they finish, and reports each row's tokens as they are made (`Row.emit`), so a streamed
response moves with the batch. Before every decode step the engine asks `admit` for more: waiting
requests with the same sampling settings join the running batch while it has room (continuous
batching at step granularity); others wait for a batch of their own.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue holds max_queue requests already."""


class ShuttingDown(Exception):
    """The server is stopping and takes no new work."""


@dataclass
class Row:
    """One sequence (one choice of a request). emit(tokens, finish_reason | None, error | None)
    is called from the worker thread."""

    ids: list[int]
    max_tokens: int
    seed: int
    stop: tuple[str, ...]
    emit: Callable[[list[int], str | None, str | None], None]


@dataclass
class Job:
    """One request: its rows and the sampling settings they share."""

    rows: list[Row]
    temperature: float
    top_p: float
    top_k: int
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def key(self) -> tuple:
        return (self.temperature, self.top_p, self.top_k)


class Batcher:
    """The queue and the worker. `run_batch(rows, temperature, top_p, top_k, admit)` does the
    decoding (it calls each row's emit); `admit(active_rows)` returns rows of waiting requests
    that fit, appending them to `rows`. Both run on the worker thread only."""

    def __init__(self, run_batch, max_batch: int = 16, max_queue: int = 64):
        if max_batch < 1 or max_queue < 1:
            raise ValueError(f"max_batch and max_queue must be >= 1, got {max_batch}, {max_queue}")
        self.run_batch, self.max_batch, self.max_queue = run_batch, max_batch, max_queue
        self.pending: collections.deque[Job] = collections.deque()
        self.cond = threading.Condition()
        self.stopping = False
        self.batches = 0  # batches decoded so far (for /health and tests)
        self.thread = threading.Thread(target=self._loop, name="serve-batcher", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> None:
        with self.cond:
            if self.stopping:
                raise ShuttingDown()
            if len(self.pending) >= self.max_queue:
                raise QueueFull()
            self.pending.append(job)
            self.cond.notify()

    def queued(self) -> int:
        return len(self.pending)

    def _take(self) -> list[Job] | None:
        with self.cond:
            while not self.pending and not self.stopping:
                self.cond.wait()
            if not self.pending:
                return None
            first = self.pending.popleft()
            batch, rows = [first], len(first.rows)
            for job in list(self.pending):
                if job.key == first.key and rows + len(job.rows) <= self.max_batch:
                    self.pending.remove(job)
                    batch.append(job)
                    rows += len(job.rows)
            return batch

    def _admit(self, key: tuple, active: int, batch: list[Job], rows: list[Row]) -> list[Row]:
        """Waiting jobs with this sampling key that fit next to `active` running rows."""
        added: list[Row] = []
        with self.cond:
            for job in list(self.pending):
                if job.key == key and active + len(added) + len(job.rows) <= self.max_batch:
                    self.pending.remove(job)
                    batch.append(job)
                    added += job.rows
        rows += added
        return added

    def _loop(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            rows = [row for job in batch for row in job.rows]
            first = batch[0]

            def admit(active, key=first.key, batch=batch, rows=rows):
                return [] if self.stopping else self._admit(key, active, batch, rows)

            try:
                self.run_batch(rows, first.temperature, first.top_p, first.top_k, admit)
            except Exception as e:  # a bug or a bad request that got past the checks
                log.exception("batch failed")
                for row in rows:
                    row.emit([], None, f"{type(e).__name__}: {e}")
            finally:
                self.batches += 1
                for job in batch:
                    job.done.set()

    def stop(self, timeout: float | None = 60.0) -> None:
        """Finish the batch in progress, fail the waiting requests, end the worker."""
        with self.cond:
            self.stopping = True
            waiting = list(self.pending)
            self.pending.clear()
            self.cond.notify_all()
        for job in waiting:
            for row in job.rows:
                row.emit([], None, "the server is shutting down")
        self.thread.join(timeout)
