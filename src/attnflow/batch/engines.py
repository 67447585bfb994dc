"""Where shards run: in this process, in local worker processes, or as Ray actors.

Each engine takes the shards still to do and calls ``done(shard, parquet_bytes)``
in this process as each one finishes; the caller writes the file. Engines differ
only in where :class:`~attnflow.batch.worker.ShardWorker` lives, so their rows are equal.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import AttnflowError
from .worker import Shard, ShardWorker, WorkSpec

ENGINES: tuple[str, ...] = ("local", "ray")
Done = Callable[[int, bytes], None]

_WORKER: ShardWorker | None = None


def available_cores() -> int:
    """The CPU cores this process may run on.

    Examples
    --------
    >>> available_cores() >= 1
    True
    """
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def run_in_process(spec: WorkSpec, shards: Sequence[Shard], done: Done, loaded: Any = None) -> None:
    """One worker in this process (``workers=1``): torch and numba threads set to ``spec.threads``, then restored."""
    import numba
    import torch

    before = torch.get_num_threads(), numba.get_num_threads()
    try:
        worker = ShardWorker(spec, loaded)
        for shard in shards:
            done(*worker.run(shard))
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])


def exit_with_parent() -> None:
    """In a process started by :mod:`multiprocessing`: exit at once when the parent dies, ``kill -9`` included.

    A thread waits on the parent's sentinel (readable when the parent is gone) and ends
    this process with ``os._exit``, so a killed ``attnflow batch`` leaves no worker holding
    a model; once the workers are gone, multiprocessing's resource tracker (whose pipe
    they held) ends too. Does nothing in a process without a multiprocessing parent.

    Examples
    --------
    >>> exit_with_parent()  # the main process: nothing to watch
    """
    import multiprocessing
    import threading
    from multiprocessing.connection import wait

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)  # no clean-up: the process that would use the results is gone

    threading.Thread(target=watch, name="attnflow-exit-with-parent", daemon=True).start()


def _init_process(spec: WorkSpec) -> None:
    global _WORKER
    exit_with_parent()  # first: loading the model takes seconds
    _WORKER = ShardWorker(spec)


def _run_in_worker(shard: Shard) -> tuple[int, bytes]:
    assert _WORKER is not None, "worker process was not initialised"
    return _WORKER.run(shard)


def run_local(spec: WorkSpec, shards: Sequence[Shard], done: Done, workers: int) -> None:
    """``workers`` processes (started with ``spawn``), each loading the model once; shards go to whichever is free."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_process, initargs=(spec,))
    try:
        pending = {pool.submit(_run_in_worker, shard) for shard in shards}
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                done(*future.result())
    except BrokenProcessPool:
        raise AttnflowError(
            "A batch worker process died (out of memory?); finished shards are kept: rerun the same command to resume."
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def check_address(address: str) -> None:
    """Fail in one line when a ``HOST:PORT`` Ray address does not answer (Ray itself would wait for minutes).

    ``"auto"`` and ``ray://`` client addresses are left to Ray.

    Examples
    --------
    >>> check_address("auto")
    """
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise AttnflowError(f"The Ray address {address!r} must be HOST:PORT (e.g. 127.0.0.1:6379), 'auto' or ray://...")
    try:
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    except OSError as exc:
        raise AttnflowError(
            f"Cannot reach a Ray cluster at {address!r} ({exc.strerror or exc}); start one with `ray start --head` "
            "or check the address."
        ) from None


def run_ray(spec: WorkSpec, shards: Sequence[Shard], done: Done, workers: int | None, address: str | None) -> int:
    """Shards as tasks of Ray actors that each hold the model; returns the number of actors used.

    ``address`` ``None`` starts a new local Ray for this run (and stops it after),
    even when a cluster is running here (``"auto"`` joins that one); otherwise this
    connects to the cluster at ``address``. ``workers`` ``None``
    gives one actor per ``spec.threads`` CPUs of the cluster.
    """
    try:
        import ray
    except ImportError:
        raise AttnflowError(
            "--engine ray needs Ray: pip install 'ray>=2.9,<3' (attnflow's optional extra named ray)."
        ) from None
    from ray.exceptions import RayError, RayTaskError

    if address is not None:
        check_address(address)
    started = False
    auth_mode = os.environ.get("RAY_AUTH_MODE")  # a new local Ray sets it for this process: restored after
    if not ray.is_initialized():
        options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
        if address is None:
            options["num_cpus"] = (workers or available_cores()) * spec.threads
        try:
            ray.init(address=address or "local", **options)  # "local": a new Ray, even when one is running
        except (ConnectionError, RayError, RuntimeError) as exc:
            raise AttnflowError(f"Cannot connect to Ray at {address or 'a new local cluster'!r}: {exc}") from None
        started = True
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1) // spec.threads))
        workers = max(1, min(workers, len(shards)))
        actor_class = ray.remote(num_cpus=spec.threads)(ShardWorker)
        actors = [actor_class.remote(spec) for _ in range(workers)]
        queue = list(shards)
        pending: dict[Any, Any] = {}
        for actor in actors:
            if queue:
                pending[actor.run.remote(queue.pop(0))] = actor
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            actor = pending.pop(ready[0])
            try:
                number, data = ray.get(ready[0])
            except RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                message = str(cause) if isinstance(cause, AttnflowError) else str(exc).strip().splitlines()[-1]
                raise AttnflowError(message) from None
            except RayError as exc:
                reason = " ".join(str(exc).split())[:300]
                raise AttnflowError(
                    f"A Ray worker failed ({type(exc).__name__}: {reason}); finished shards are kept: rerun to resume."
                ) from None
            done(number, data)
            if queue:
                pending[actor.run.remote(queue.pop(0))] = actor
        for actor in actors:
            ray.kill(actor)
        return workers
    finally:
        if started:
            ray.shutdown()
            if auth_mode is None:
                os.environ.pop("RAY_AUTH_MODE", None)
            else:
                os.environ["RAY_AUTH_MODE"] = auth_mode
