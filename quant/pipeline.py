"""Three stages over two bounded queues: a reader thread, the codec on the calling thread, a writer thread.

Why: reading (safetensors pages, BF16/FP8 -> float32), quantizing and writing (plus its
sha256) each leave the other resources idle when run one after another. Here the reader
prepares the next slab while the codec quantizes this one and the writer writes and hashes
the last one. Torch ops, file I/O and hashlib release the GIL, so the stages overlap on
separate cores. Memory stays bounded: at most `depth` items wait in each queue.

The codec stage runs on the calling thread, so whatever it calls (progress reporters that
write a database row, cancellation checks) stays on the thread that owns them. The first
error of any stage stops the others and is raised on the calling thread.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Callable, Iterable

_END = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def run(produce: Iterable[Any], transform: Callable[[Any], Any], consume: Callable[[Any], None],
        depth: int = 2) -> None:
    """consume(transform(item)) for every item of produce, in order, the three overlapping.

    produce runs on a reader thread, transform on the calling thread, consume on a writer
    thread; a transform returning None passes nothing on."""
    to_codec: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
    to_writer: "queue.Queue[Any]" = queue.Queue(maxsize=depth)
    stop = threading.Event()
    writer_error: list[BaseException] = []

    def put(q: "queue.Queue[Any]", item: Any) -> bool:
        """Put unless asked to stop; False when stopped."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        try:
            for item in produce:
                if not put(to_codec, item):
                    return
            put(to_codec, _END)
        except BaseException as exc:  # handed to the calling thread
            put(to_codec, _Failed(exc))

    def writer() -> None:
        while True:
            item = to_writer.get()
            if item is _END:
                return
            if writer_error:
                continue  # drain, so that the codec never blocks on a dead writer
            try:
                consume(item)
            except BaseException as exc:
                writer_error.append(exc)
                stop.set()

    threads = [threading.Thread(target=reader, name="dsq-reader", daemon=True),
               threading.Thread(target=writer, name="dsq-writer", daemon=True)]
    for t in threads:
        t.start()
    try:
        while True:
            item = to_codec.get()
            if item is _END:
                break
            if isinstance(item, _Failed):
                raise item.exc
            if writer_error:
                break
            out = transform(item)
            if out is not None:
                to_writer.put(out)
    except BaseException:
        stop.set()
        raise
    finally:
        to_writer.put(_END)
        threads[1].join()
        stop.set()
        while threads[0].is_alive():  # unblock a reader waiting on a full queue
            try:
                to_codec.get(timeout=0.1)
            except queue.Empty:
                pass
        threads[0].join()
    if writer_error:
        raise writer_error[0]
