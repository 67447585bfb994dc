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


#: How long the GCS of a cluster has to answer attnflow's probe once Ray is imported (Ray itself retries for minutes).
GCS_PROBE_SECONDS = 10.0

# Run in a fresh process (Ray's C++ client cannot be interrupted, and its retries log to stderr): connects a GCS
# client to argv[1] in a thread, waits argv[2] seconds, prints one JSON verdict and ends.
_GCS_PROBE = """
import json, os, sys, threading
from ray._raylet import GcsClient
from ray.exceptions import AuthenticationError
verdict = {}
def connect():
    try:
        GcsClient(address=sys.argv[1])
        verdict["ok"] = True
    except AuthenticationError as exc:
        verdict["auth"] = str(exc)
    except Exception as exc:
        verdict["error"] = f"{type(exc).__name__}: {exc}"
thread = threading.Thread(target=connect, daemon=True)
thread.start()
thread.join(float(sys.argv[2]))
print(json.dumps(verdict or {"timeout": True}), flush=True)
os._exit(0)
"""


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of a ``HOST:PORT`` Ray address, or one :class:`AttnflowError` line saying what is wrong.

    Examples
    --------
    >>> parse_address("127.0.0.1:6379")
    ('127.0.0.1', 6379)
    >>> parse_address("127.0.0.1:99999")
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The Ray address '127.0.0.1:99999' has port 99999; a port is 1 to 65535.
    """
    if address.startswith("ray://"):
        raise AttnflowError(
            f"The Ray address {address!r} is a Ray Client address; attnflow connects as a driver to the cluster's GCS: "
            "give HOST:PORT (the port `ray start --head` printed, 6379 by default) or auto."
        )
    host, _, port = address.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()):
        raise AttnflowError(f"The Ray address {address!r} must be HOST:PORT (e.g. 127.0.0.1:6379), or auto.")
    if not 1 <= int(port) <= 65535:
        raise AttnflowError(f"The Ray address {address!r} has port {int(port)}; a port is 1 to 65535.")
    return host.strip("[]"), int(port)


def check_address(address: str) -> str:
    """The ``HOST:PORT`` to connect to, once something answers there; else one line (Ray would wait for minutes).

    ``"auto"`` is resolved as Ray resolves it (``RAY_ADDRESS``, then the cluster ``ray start``
    last started here), so a stale current-cluster file fails here too.

    Examples
    --------
    >>> check_address("nowhere")
    Traceback (most recent call last):
    ...
    attnflow.errors.AttnflowError: The Ray address 'nowhere' must be HOST:PORT (e.g. 127.0.0.1:6379), or auto.
    """
    given = address
    if address == "auto":
        from ray._private.services import canonicalize_bootstrap_address

        services_log = logging.getLogger("ray._private.services")  # "Found multiple active Ray instances"
        level = services_log.level
        services_log.setLevel(logging.ERROR)
        try:
            address = canonicalize_bootstrap_address("auto") or ""
        except (ConnectionError, ValueError) as exc:
            raise AttnflowError(
                f"--address auto found no Ray cluster on this machine ({_first_line(exc)}); start one with "
                "`ray start --head`, or give HOST:PORT."
            ) from None
        finally:
            services_log.setLevel(level)
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
    except OSError as exc:
        found = f" (auto found {address!r}, the cluster `ray start` last started here)" if given == "auto" else ""
        raise AttnflowError(
            f"Cannot reach a Ray cluster at {given!r}{found}: {exc.strerror or exc}; start one with `ray start --head` "
            "or check the address."
        ) from None
    return address


def auth_token_source() -> str | None:
    """Where Ray would read its authentication token, in Ray's order, or ``None`` when there is none.

    ``RAY_AUTH_TOKEN``, then the file ``RAY_AUTH_TOKEN_PATH`` names, then ``~/.ray/auth_token``
    (https://docs.ray.io/en/latest/ray-security/token-auth.html).
    """
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return os.environ["RAY_AUTH_TOKEN_PATH"]
    default = os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
    return default if os.path.isfile(default) else None


def probe_cluster(address: str, seconds: float = GCS_PROBE_SECONDS) -> dict[str, Any]:
    """Ask the GCS at ``address`` for its cluster id in a separate process, bounded by ``seconds`` once Ray is imported.

    Returns ``{"ok": True}``, ``{"auth": message}`` (the cluster wants a token this
    process does not send, or refused it), ``{"timeout": True}`` (something answers on
    the port, but no Ray GCS) or ``{"error": message}``. Ray's retries and logs stay in
    that process, with this process's environment (``RAY_AUTH_MODE`` and the token).
    """
    import json
    import subprocess
    import sys

    try:
        probe = subprocess.run(
            [sys.executable, "-c", _GCS_PROBE, address, str(seconds)], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True, timeout=seconds + 120, check=False,
        )
        return dict(json.loads(probe.stdout.strip().splitlines()[-1]))
    except (subprocess.TimeoutExpired, ValueError, IndexError):
        return {"timeout": True}


def connect_checks(address: str, seconds: float = GCS_PROBE_SECONDS) -> None:
    """Make sure ``ray.init(address=...)`` will connect at once, or fail in one line; sets ``RAY_AUTH_MODE`` if needed.

    When the cluster wants token authentication, ``RAY_AUTH_MODE`` is not set and a token
    is where Ray documents it (:func:`auth_token_source`), ``RAY_AUTH_MODE=token`` is set for
    this process (the caller restores it) and the token is checked too. A cluster without
    authentication is joined as before: a token-mode driver would connect, but its actors
    would never start there.
    """
    verdict = probe_cluster(address, seconds)
    source = auth_token_source()
    if "auth" in verdict and os.environ.get("RAY_AUTH_MODE") is None and source is not None:
        _set_auth_mode("token")
        verdict = probe_cluster(address, seconds)
    if verdict.get("ok"):
        return
    if "auth" in verdict:
        sent = os.environ.get("RAY_AUTH_MODE", "").lower() == "token" and source is not None
        found = (f"it refused the token from {source}" if sent else "this process has no token for it "
                 "(RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token, with RAY_AUTH_MODE unset or token)")
        raise AttnflowError(
            f"The Ray cluster at {address!r} requires token authentication and {found}: copy the cluster's token "
            "(`ray get-auth-token` on the head) to ~/.ray/auth_token here, or set RAY_AUTH_TOKEN."
        )
    if "timeout" in verdict:
        raise AttnflowError(
            f"Something answers at {address!r}, but no Ray cluster (no reply within {seconds:g} s); give the address "
            "`ray start --head` printed (its --port, 6379 by default)."
        )
    raise AttnflowError(f"Cannot connect to Ray at {address!r}: {_first_line(verdict['error'])}")


def _set_auth_mode(mode: str | None) -> None:
    """Set (or, with ``None``, unset) ``RAY_AUTH_MODE`` and have Ray re-read it, as Ray's own token set-up does."""
    if mode is None:
        os.environ.pop("RAY_AUTH_MODE", None)
    else:
        os.environ["RAY_AUTH_MODE"] = mode
    import sys

    if "ray._raylet" in sys.modules:  # Ray caches its configuration when imported
        from ray._raylet import Config

        Config.initialize("")


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0][:300] if text else type(value).__name__


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

    auth_mode = os.environ.get("RAY_AUTH_MODE")  # a new local Ray sets it for this process: restored after
    started = False
    if address is not None and not ray.is_initialized():
        address = check_address(address)
        try:
            connect_checks(address)  # may set RAY_AUTH_MODE=token, as `ray start` does for a token found here
        except AttnflowError:
            _restore_auth_mode(auth_mode)
            raise
    if not ray.is_initialized():
        options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "include_dashboard": False}
        if address is None:
            options["num_cpus"] = (workers or available_cores()) * spec.threads
        try:
            ray.init(address=address or "local", **options)  # "local": a new Ray, even when one is running
        except (ConnectionError, RayError, RuntimeError) as exc:
            _restore_auth_mode(auth_mode)
            raise AttnflowError(
                f"Cannot connect to Ray at {address or 'a new local cluster'!r}: {_first_line(exc)}"
            ) from None
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
            _restore_auth_mode(auth_mode)


def _restore_auth_mode(auth_mode: str | None) -> None:
    if os.environ.get("RAY_AUTH_MODE") != auth_mode:
        _set_auth_mode(auth_mode)
