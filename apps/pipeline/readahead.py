"""Run a chunk iterator in its own thread, a few chunks ahead of its consumer.

For two-stage streams where both stages spend their time in C code that releases the GIL
(storage reads, zstd, SHA-256; file writes on the other side): on two cores the stages overlap.
The queue is bounded (`depth` chunks), so memory stays flat. An exception in the producing
thread is raised in the consumer, at the point the stream reached; a consumer that stops early
(or fails) stops the producer before returning. The iterator must not touch the database: the
producing thread has no connection of its own (count progress on the consumer's side).
"""
import queue
import threading
from collections.abc import Iterable, Iterator

_END = object()


def read_ahead(chunks: Iterable[bytes], *, depth: int = 8, name: str = "read-ahead") -> Iterator[bytes]:
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for chunk in chunks:
                if not put(chunk):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer
            put(exc)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None and stop.is_set():
                close()  # a generator the consumer gave up on: run its clean-up here, in its own thread

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()
