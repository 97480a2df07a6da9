"""Decode untrusted uploads in a disposable child process with memory and time limits.

Each upload is decoded by a fresh process forked from a 'forkserver' that has
already imported numpy, pydicom, Pillow and the codec plugins, so a child pays
no import cost. One child is kept started ahead of need (the "spare"): an
upload is handed to it at once, and a background thread starts its
replacement afterwards. While idle, the spare faults in heap memory, because
on virtual machines first-touch page faults cost more than the decode. The
child caps its own address space (RLIMIT_AS) and CPU time before
touching the data and is killed when the wall-clock timeout expires; it exits
after one upload, so nothing a hostile file did to it outlives that upload.

Bytes travel through memfd files rather than pickles: the upload is written
once into a shared file, and the decoded arrays come back through another,
each copied exactly once on each side.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import mmap
import multiprocessing
import multiprocessing.forkserver
import multiprocessing.resource_tracker
import os
import resource
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from multiprocessing import reduction
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np

from .decoding import check_file_size, decode
from .errors import DecodeError, DecodeOutOfMemory, DecoderCrashed, DecodeTimeout
from .types import DecodedImage

logger = logging.getLogger(__name__)

PRELOAD_MODULES = ["cases.imaging.preload"]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(PRELOAD_MODULES)
_ARRAY_ALIGNMENT = 64
# Heap the idle child faults in ahead of the upload: page faults dominate a fresh process's first decode.
PREFAULT_MB = 128
# Room for the decoded arrays of a typical radiograph, allocated by the idle child too.
OUTPUT_PREALLOCATE_MB = 32


class Decoder(Protocol):
    def __call__(self, data: bytes, *, filename: str, max_bytes: int, max_pixels: int) -> DecodedImage: ...


@dataclass(frozen=True)
class _Job:
    size: int
    filename: str
    max_bytes: int
    max_pixels: int
    decode_threads: int
    memory_mb: int
    timeout_s: float
    decoder: Decoder


@dataclass(frozen=True)
class _ArraySlot:
    offset: int
    dtype: str
    shape: tuple[int, ...]


def decode_guarded(
    data: bytes,
    *,
    filename: str,
    max_bytes: int,
    max_pixels: int,
    decode_threads: int = 1,
    timeout_s: float = 10,
    memory_mb: int = 1024,
    _decoder: Decoder = decode,
) -> DecodedImage:
    """``decode`` in a child process limited to ``memory_mb`` of extra address space and ``timeout_s`` seconds.

    ``memory_mb`` is counted on top of the child's preloaded interpreter
    (numpy, pydicom, Pillow). Refusals come back as the same ``DecodeError``
    subclasses ``decode`` raises; a timeout is ``DecodeTimeout``, exhausted
    memory ``DecodeOutOfMemory`` and a dead child ``DecoderCrashed``.
    ``_decoder`` is a test hook: a module-level function with ``decode``'s
    signature, run in the child instead of it.
    """
    check_file_size(data, max_bytes)
    job = _Job(len(data), filename, max_bytes, max_pixels, decode_threads, memory_mb, timeout_s, _decoder)
    worker = _pool.take()
    try:
        return worker.run(data, job)
    finally:
        worker.retire()
        _pool.refill_soon()


def warm_up() -> None:
    """Start the forkserver and a spare child now (e.g. at worker start) instead of on the first upload."""
    _pool.refill_soon()
    _pool.wait()


class _SparePool:
    """At most one started, idle worker, refilled by a background thread after each use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: _Worker | None = None
        self._filling: threading.Thread | None = None

    def take(self) -> _Worker:
        self.wait()
        with self._lock:
            worker, self._spare = self._spare, None
        if worker is not None and worker.usable():
            return worker
        if worker is not None:
            worker.discard()
        return _Worker()

    def wait(self) -> None:
        # Joining a half-started spare is cheaper than starting a second child beside it.
        with self._lock:
            filling = self._filling
        if filling is not None:
            filling.join()

    def refill_soon(self) -> None:
        with self._lock:
            if self._spare is not None or self._filling is not None:
                return
            self._filling = threading.Thread(target=self._fill, name="pneumo-decode-spare", daemon=True)
            self._filling.start()

    def _fill(self) -> None:
        try:
            worker: _Worker | None = _Worker()
        except Exception:
            # The next upload starts its own worker, and reports the failure to its user.
            logger.warning("could not start a spare decoding process", exc_info=True)
            worker = None
        with self._lock:
            self._filling = None
            if self._spare is None:
                self._spare, worker = worker, None
        if worker is not None:
            worker.discard()

    def forget(self) -> None:
        """After fork: the spare belongs to the parent process; drop our copies of its handles."""
        self._lock = threading.Lock()
        spare, self._spare, self._filling = self._spare, None, None
        if spare is not None:
            spare.close_handles()


def _forget_parents_forkserver() -> None:
    """After fork: the parent's forkserver is not our child, and multiprocessing fails waiting on it.

    Clearing its record makes the next start launch a forkserver of our own
    (e.g. in each Celery prefork worker whose parent had already decoded).
    """
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    if server is None or getattr(server, "_forkserver_pid", None) is None:
        return
    alive_fd = server._forkserver_alive_fd
    server._forkserver_pid = server._forkserver_address = server._forkserver_alive_fd = None
    with contextlib.suppress(OSError, TypeError):
        os.close(alive_fd)


def _release_inherited_locks() -> None:
    # Our spare-starting thread may have held these at the fork; it does not exist in the child to release them.
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    if server is not None and hasattr(server, "_lock"):
        server._lock = threading.Lock()
    tracker = getattr(multiprocessing.resource_tracker, "_resource_tracker", None)
    if tracker is not None and hasattr(tracker, "_lock"):
        tracker._lock = threading.RLock()


def _after_fork_in_child() -> None:
    _pool.forget()
    _release_inherited_locks()
    _forget_parents_forkserver()


_pool = _SparePool()
os.register_at_fork(after_in_child=_after_fork_in_child)


class _Worker:
    """One single-use child process, waiting for its upload."""

    def __init__(self) -> None:
        self.input_fd, self.output_fd = _shared_file("pneumo-upload"), _shared_file("pneumo-decoded")
        self.conn, child_conn = _CONTEXT.Pipe(duplex=True)
        args = (child_conn, _InheritedFd(self.input_fd), _InheritedFd(self.output_fd))
        self.process = _CONTEXT.Process(target=_child_main, args=args, name="pneumo-decode", daemon=True)
        try:
            self.process.start()
        except Exception as exc:
            self.close_handles()
            raise DecoderCrashed("The image decoder could not be started; try again shortly") from exc
        finally:
            child_conn.close()

    def usable(self) -> bool:
        return self.process.is_alive()

    def run(self, data: bytes, job: _Job) -> DecodedImage:
        _write_all(self.input_fd, data)
        started = time.monotonic()
        self.conn.send(job)
        return self._result(job, job.timeout_s - (time.monotonic() - started))

    def retire(self) -> None:
        """Kill the used child now; reap it in the background, off the upload's critical path."""
        if self.process.is_alive():
            self.process.kill()
        threading.Thread(target=self.discard, name="pneumo-decode-reaper", daemon=True).start()

    def _result(self, job: _Job, remaining_s: float) -> DecodedImage:
        if not self.conn.poll(max(remaining_s, 0.0)):
            self.process.kill()
            raise DecodeTimeout(
                f"Decoding took longer than {job.timeout_s:g} s and was stopped; the file may be damaged"
            )
        try:
            status, payload = self.conn.recv()
        except (EOFError, OSError):
            raise self._crash(job) from None
        if status == "error":
            raise payload
        return _import_arrays(payload, self.output_fd)

    def _crash(self, job: _Job) -> DecodeError:
        self.process.join(1)
        if self.process.exitcode == -signal.SIGXCPU:
            return DecodeTimeout(f"Decoding used more than {job.timeout_s:g} s of processor time and was stopped")
        return DecoderCrashed("The image decoder stopped unexpectedly on this file; it may be damaged")

    def discard(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.close_handles()

    def close_handles(self) -> None:
        self.conn.close()
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self.input_fd, self.output_fd):
            os.close(fd)


class _InheritedFd:
    """A file descriptor the forkserver duplicates into the child (as Connections are passed)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self) -> tuple[Callable[[Any], int], tuple[Any]]:
        return _detach, (reduction.DupFd(self.fd),)


def _detach(dup: Any) -> int:
    return dup.detach()


def _shared_file(name: str) -> int:
    if hasattr(os, "memfd_create"):
        return os.memfd_create(name, os.MFD_CLOEXEC)
    handle = tempfile.TemporaryFile()  # noqa: SIM115 - only its descriptor is kept, closed by the worker
    return os.dup(handle.fileno())


def _write_all(fd: int, data: bytes | memoryview, offset: int = 0) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _read_all(fd: int, size: int) -> bytes:
    chunks, offset = [], 0
    while offset < size:
        chunk = os.pread(fd, size - offset, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# ---- in the child -------------------------------------------------------------------------------


def _child_main(conn: Connection, input_fd: int, output_fd: int) -> None:
    baseline = _current_address_space()
    _prepare_while_idle(conn, output_fd)
    try:
        job = conn.recv()
    except (EOFError, OSError):
        return  # the parent went away before handing us an upload
    _limit_resources(job, baseline)
    # pydicom warns about every non-conformant attribute; in this disposable, single-threaded child
    # that would only fill the server's log. (warnings.catch_warnings is not thread-safe in-process.)
    warnings.simplefilter("ignore")
    conn.send(_outcome(job, input_fd, output_fd))


def _prepare_while_idle(conn: Connection, output_fd: int) -> None:
    # Warming up pays only while nothing waits: once an upload is here, faulting on demand is cheaper.
    for _ in _prefault_heap(PREFAULT_MB):
        if conn.poll(0):
            return
    _preallocate(output_fd, OUTPUT_PREALLOCATE_MB)


def _outcome(job: _Job, input_fd: int, output_fd: int) -> tuple[str, Any]:
    try:
        data = _read_all(input_fd, job.size)
        result = job.decoder(
            data,
            filename=job.filename,
            max_bytes=job.max_bytes,
            max_pixels=job.max_pixels,
            decode_threads=job.decode_threads,
        )
        return "ok", _export_arrays(result, output_fd)
    except DecodeError as exc:
        return "error", exc
    except MemoryError:
        return "error", DecodeOutOfMemory(_out_of_memory(job))


def _preallocate(fd: int, megabytes: int) -> None:
    # Shared-memory pages allocated now, while idle, make writing the result a plain copy.
    try:
        os.posix_fallocate(fd, 0, megabytes * 2**20)
    except OSError:
        return


def _prefault_heap(megabytes: int) -> Iterator[None]:
    """Touch ``megabytes`` of heap and keep it, so the decode reuses resident pages instead of faulting.

    On virtual machines a first touch costs microseconds per 4 KiB page, a
    large share of a 5-megapixel decode. Yields after each block so the caller
    can stop early. glibc only.
    """
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return
    mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)  # blocks up to 32 MiB come from the heap...
    mallopt(_M_TRIM_THRESHOLD, (megabytes + 64) * 2**20)  # ...and freed heap is kept, not trimmed
    block = _MAX_MMAP_THRESHOLD // 2
    touched = []
    for _ in range(megabytes * 2**20 // block):
        touched.append(np.ones(block, np.uint8))
        yield
    del touched


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MAX_MMAP_THRESHOLD = 32 * 2**20


def _libc_function(name: str) -> Callable[..., int] | None:
    try:
        return getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None


def _limit_resources(job: _Job, baseline: int) -> None:
    # The limit counts from before the heap warm-up; a limit smaller than the warm-up gives it back first.
    if job.memory_mb < PREFAULT_MB and (malloc_trim := _libc_function("malloc_trim")) is not None:
        malloc_trim(0)
    address_space = baseline + job.memory_mb * 2**20
    _set_limit(resource.RLIMIT_AS, address_space, address_space)
    # CPU time backs up the wall-clock timeout: SIGXCPU at the soft limit, SIGKILL at the hard one.
    cpu_seconds = math.ceil(job.timeout_s) + 1
    _set_limit(resource.RLIMIT_CPU, cpu_seconds, cpu_seconds + 1)
    _set_limit(resource.RLIMIT_CORE, 0, 0)


def _set_limit(kind: int, soft: int, hard: int) -> None:
    # A process may only lower its hard limit, never raise it.
    current_hard = resource.getrlimit(kind)[1]
    if current_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, current_hard), min(hard, current_hard)
    resource.setrlimit(kind, (soft, hard))


def _current_address_space() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[0]) * mmap.PAGESIZE


def _out_of_memory(job: _Job) -> str:
    return f"Decoding needed more than {job.memory_mb} MB of memory and was stopped; the image is too large or damaged"


def _export_arrays(result: DecodedImage, output_fd: int) -> DecodedImage:
    """The result with its arrays written to the shared file and replaced by where they lie in it."""
    offset, slots = 0, {}
    for name in ("model_image", "display_pixels"):
        array = getattr(result, name)
        if array is None:
            continue
        array = np.ascontiguousarray(array)
        _write_all(output_fd, memoryview(array).cast("B"), offset)
        slots[name] = _ArraySlot(offset, array.dtype.str, array.shape)
        offset += -(-array.nbytes // _ARRAY_ALIGNMENT) * _ARRAY_ALIGNMENT
    return replace(result, **slots)


# ---- back in the parent -------------------------------------------------------------------------


def _import_arrays(result: DecodedImage, output_fd: int) -> DecodedImage:
    arrays = {
        name: _read_array(output_fd, slot)
        for name in ("model_image", "display_pixels")
        if isinstance(slot := getattr(result, name), _ArraySlot)
    }
    return replace(result, **arrays)


def _read_array(fd: int, slot: _ArraySlot) -> np.ndarray:
    # One copy into our own (already resident) heap: cheaper than mapping the child's pages one by one.
    array = np.empty(slot.shape, dtype=np.dtype(slot.dtype))
    view, offset = memoryview(array).cast("B"), slot.offset
    while view:
        read = os.preadv(fd, [view], offset)
        if not read:
            raise DecoderCrashed("The image decoder returned incomplete data")
        view, offset = view[read:], offset + read
    return array
