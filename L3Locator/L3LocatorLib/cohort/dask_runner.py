"""Run one function per scan on a Dask cluster and stream the rows back to the caller.

The caller (the batch loop on the driver) keeps the one results writer, so resume and
crash safety stay as they are: rows arrive here as each scan finishes (``as_completed``)
and are handed back one at a time; nothing is written on the workers.

- ``cluster="local"``: a ``LocalCluster`` of ``workers`` processes with one thread each on
  this machine; ``cluster="tcp://host:8786"``: an existing scheduler (e.g. started by
  dask-jobqueue on Slurm/PBS, see the README).
- One task per scan; at most a few tasks per worker are in flight, so a cohort of 100 000
  scans never sits in the scheduler at once.
- A scan whose worker dies (out of memory, a crash in a native library) is retried once on
  another worker; if that worker dies too, the scan is handed to the cluster once more
  before it becomes an error row. The second round is for the innocent: a scan waiting on
  the worker that a crashing scan kills dies with it and can meet it again on the retry.
  On a local cluster the first round is set here (``distributed.scheduler.allowed-failures``
  = 1); an external scheduler uses its own setting (set it to 1 there, see the README).
- The function runs in worker processes: it must be importable there (a module-level
  function of an installed package) and keep its heavy state (the model) per process.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, TypeVar

from ..errors import L3LocatorError
from .deps import require_dask

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Row = dict[str, Any]

#: Local-cluster scheduler settings: retry a scan that killed its worker once, and hand
#: each single-threaded worker one task at a time (so a dying worker takes one scan down).
LOCAL_DASK_CONFIG = {
    "distributed.scheduler.allowed-failures": 1,
    "distributed.scheduler.worker-saturation": 1.0,
}


@dataclass(frozen=True)
class ClusterOptions:
    """Where to run: ``address`` "local" or a scheduler address like ``tcp://host:8786``."""

    address: str = "local"
    workers: int = 2  #: worker processes of a local cluster
    memory_limit: str = "auto"  #: per local worker; a worker above it is restarted
    tasks_per_worker: int = 2  #: tasks in flight per worker thread


#: Rounds of Dask attempts a scan gets before its killed workers make it an error row.
KILLED_ROUNDS = 2


def killed_message() -> str:
    return ("This scan stopped the worker process that read it again and again (it may need "
            "more memory than a worker has, or the file crashes a reader). Run it alone with "
            "'l3locator locate' to see the problem, or give the workers more memory.")


class ClusterError(L3LocatorError):
    """The Dask cluster cannot be started or its scheduler cannot be reached."""


def _unreachable(address: str, error: BaseException) -> str:
    detail = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if address == "local":
        return (f"The local Dask cluster could not be started ({detail}). Nothing was read or "
                "written. Run without --cluster, or check this machine's memory and ports.")
    return (f"The Dask scheduler at {address} did not answer ({detail}). Nothing was read or "
            "written. Check the address and that the scheduler is running and reachable from "
            "this machine, or use --cluster local.")


class DaskSession:
    """A Dask client (and, for "local", its cluster); use as a context manager."""

    def __init__(self, options: ClusterOptions = ClusterOptions()) -> None:
        distributed = require_dask()
        import dask

        if not logging.getLogger().isEnabledFor(logging.INFO):
            # Dask logs every connection at INFO; show its warnings only, unless --verbose.
            logging.getLogger("distributed").setLevel(logging.WARNING)
        self.options = options
        self.cluster: Any = None
        self._config = dask.config.set(LOCAL_DASK_CONFIG) if options.address == "local" else None
        if self._config is not None:
            self._config.__enter__()
        try:
            if options.address == "local":
                self.cluster = distributed.LocalCluster(
                    n_workers=options.workers, threads_per_worker=1, processes=True,
                    memory_limit=options.memory_limit, dashboard_address=":0",
                    silence_logs=logging.ERROR,
                )
                self.client = distributed.Client(self.cluster)
            else:
                self.client = distributed.Client(options.address)
        except (OSError, TimeoutError) as error:  # no answer, refused, a bad address
            self.close()
            raise ClusterError(_unreachable(options.address, error)) from None
        except BaseException:
            self.close()
            raise

    def threads(self) -> int:
        """Worker threads now connected (a cluster may grow or shrink while it runs)."""
        return sum(self.client.nthreads().values())

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self.cluster is not None:
            self.cluster.close()
        if self._config is not None:
            self._config.__exit__(None, None, None)
            self._config = None

    def __enter__(self) -> DaskSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dask_rows(
    session: DaskSession,
    items: Iterable[Item],
    fn: Callable[..., Row],
    *args: Any,
    error_row: Callable[[Item, str], Row],
) -> Iterator[Row]:
    """``fn(item, *args)`` for every item on the cluster; yields each row as it finishes
    (completion order, not item order). A task that fails outside ``fn``'s own error
    handling (its workers died in every round, the cluster went away) yields ``error_row(item,
    message)`` instead, so every item yields exactly one row."""
    distributed = require_dask()
    from distributed.scheduler import KilledWorker

    client = session.client
    pending = iter((item, 1) for item in items)
    in_flight: dict[str, tuple[Item, int]] = {}  # key -> (item, round)
    completed = distributed.as_completed()
    run_id = uuid.uuid4().hex[:8]
    counter = 0

    def submit_more() -> None:
        window = max(2, session.options.tasks_per_worker * max(1, session.threads()))
        while len(in_flight) < window:
            job = next(pending, None)
            if job is None:
                return
            submit(*job)

    def submit(item: Item, round_: int) -> None:
        nonlocal counter
        counter += 1
        key = f"l3locator-{run_id}-{counter}"
        in_flight[key] = (item, round_)
        completed.add(client.submit(fn, item, *args, key=key, pure=False, retries=0))

    submit_more()
    while in_flight:
        future = next(completed)
        item, round_ = in_flight.pop(future.key)
        try:
            row = future.result()
        except KilledWorker:
            if round_ < KILLED_ROUNDS:
                future.release()
                log.warning("A scan's worker died twice; trying it once more: %s", item)
                submit(item, round_ + 1)
                continue
            log.warning("A scan stopped its worker again and again: %s", item)
            row = error_row(item, killed_message())
        except Exception as error:  # the task could not run: still one row
            log.warning("A Dask task failed outside the scan's own handling: %r", error)
            row = error_row(item, f"The cluster could not run this scan ({type(error).__name__}: "
                                  f"{error}). Run it again with --resume.")
        future.release()
        submit_more()
        yield row


def worker_peak_memory(session: DaskSession) -> dict[str, float]:
    """Peak resident memory of every worker process so far (MB), by worker address."""
    return session.client.run(_peak_rss_mb)


def _peak_rss_mb() -> float:
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0
