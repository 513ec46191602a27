"""Concurrent chat requests decoding together (`foveate serve -np N`)."""
from __future__ import annotations

import threading


class BatchScheduler:
    """Concurrent chat requests share one batched context (engine/batch.py): a worker thread
    runs read_many on a feed of the waiting requests, up to `parallel` in flight; each request
    gets its Result through a future, and its tokens through its own on_token. The worker
    holds the Reader only while requests are in flight or waiting."""

    def __init__(self, reader, parallel: int):
        import queue as q

        self.reader, self.parallel = reader, parallel
        self.jobs: q.Queue = q.Queue()
        self.futures: dict[int, object] = {}
        self.next_index = 0
        self.held = None   # the request that woke the worker, served first
        self.peak_in_flight = 0   # the most requests decoding together so far (tests, stats)
        self.worker = threading.Thread(target=self._run, daemon=True, name="foveate-batch")
        self.worker.start()

    def submit(self, job):
        from concurrent.futures import Future

        fut: Future = Future()
        self.jobs.put((job, fut))
        return fut

    def poll(self, idle: bool):
        import queue as q

        try:
            if self.held is not None:
                (job, fut), self.held = self.held, None
            else:
                job, fut = self.jobs.get(timeout=0.2 if idle else 0)
        except q.Empty:
            if idle:
                raise StopIteration   # nothing in flight, nothing waiting: give the Reader back
            return None
        index, self.next_index = self.next_index, self.next_index + 1
        self.futures[index] = fut
        self.peak_in_flight = max(self.peak_in_flight, len(self.futures))
        return index, job

    def _run(self):
        from ...engine.batch import read_many
        from ...engine.core import Sampling

        while True:
            self.held = self.jobs.get()   # wait for work without holding the Reader

            def batch():   # on the Reader's engine thread, like every llama.cpp call
                for index, res in read_many(self.reader.engine, self, None, 1024, Sampling(),
                                            self.parallel):
                    fut = self.futures.pop(index)
                    if isinstance(res, BaseException):   # that request's own failure
                        fut.set_exception(res)
                    else:
                        fut.set_result(res)

            with self.reader._lock:
                self.reader._in_batch = True
                try:
                    self.reader._on_engine(batch)
                except BaseException as e:   # the batch failed: every request in it hears why
                    for fut in self.futures.values():
                        fut.set_exception(e)
                    self.futures.clear()
                finally:
                    self.reader._in_batch = False
