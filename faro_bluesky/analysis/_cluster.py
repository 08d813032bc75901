"""Analysis on a `distributed` cluster: segmentation and measurements in worker processes.

The analyzer needs only a `concurrent.futures.Executor` (decision 0009), and distributed's
``Client.get_executor()`` is one; `ClusterExecutor` wraps it (docs/decisions/0049) because:

- **every job settles with a result or an exception, never as cancelled.** distributed
  cancels every future of a client that loses its scheduler, and a cancelled future has no
  exception to record (``Future.exception()`` raises): the analyzer would wait for that
  visit for ever and never finish the run. Here the job fails with a `RuntimeError` that the
  analyzer records for its visit (its mask is missed, the run goes on).
- **jobs are impure** (``pure=False``): distributed would otherwise hash every argument (a
  frame is 0.5 MB) to name the job, and could merge two jobs whose frames are identical.
- **a client made from an address is not dask's default scheduler**: faro's storage reads
  frames as dask arrays, which must not start computing on the GPU box; and it is closed
  with the executor (the analyzer's `close`).

A worker process that dies mid-job (killed, a segfault, out of GPU memory) is survived by
distributed itself: the scheduler notices at once (its connection closes), gives the jobs
that worker was running to another worker, and the worker's nanny starts a new process. A
job whose workers die more often than the scheduler's ``distributed.scheduler.allowed-failures``
(default 3) fails with ``distributed.KilledWorker``, which the analyzer records for its visit
like any failed segmentation. `distributed` is an optional extra (``faro-bluesky[cluster]``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["ClusterExecutor", "cluster_executor", "executor_for"]

_DROPPED = (
    "the cluster dropped this job: its client lost the connection to the scheduler, "
    "or the executor was shut down"
)


def _require_distributed() -> None:
    try:
        import distributed  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "analysis on a cluster needs the optional package 'distributed', which is not "
            "installed: install it with `uv sync --extra cluster` (or "
            "`pip install faro-bluesky[cluster]`)"
        ) from err


class ClusterExecutor(Executor):
    """A `concurrent.futures.Executor` whose jobs run on a `distributed` cluster.

    Parameters
    ----------
    client : distributed.Client
        Connected to the cluster's scheduler.
    own_client : bool
        Close ``client`` on `shutdown` (True when `cluster_executor` connected it).

    The futures it returns are running from the start (``cancel()`` returns False): a job
    handed to the scheduler is not taken back one by one; ``shutdown(cancel_futures=True)``
    cancels them all, and they then fail with a `RuntimeError`.

    """

    def __init__(self, client: Client, *, own_client: bool = False) -> None:
        self.client = client
        self._own_client = own_client
        self._jobs = client.get_executor(pure=False)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.client!r})"

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on a worker; its arguments and result are pickled."""
        job = self._jobs.submit(fn, *args, **kwargs)
        future: Future = Future()
        future.set_running_or_notify_cancel()
        job.add_done_callback(lambda job: _settle(future, job))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more jobs; wait for (or cancel) those handed out; close our own client."""
        self._jobs.shutdown(wait=wait and not cancel_futures)
        if self._own_client:
            self.client.close()


def _settle(future: Future, job: Future) -> None:
    """Give ``future`` the outcome of the cluster's ``job``: a cancellation is an error."""
    if job.cancelled():
        future.set_exception(RuntimeError(_DROPPED))
        return
    exc = job.exception()
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(job.result())


def cluster_executor(cluster: str | Client, *, timeout: float = 10.0) -> ClusterExecutor:
    """An executor on the `distributed` cluster at ``cluster``: a scheduler address or a client.

    ``cluster_executor("tcp://gpu-box:8786")`` connects a client of its own (waiting at most
    ``timeout`` s for the scheduler), closed by the executor's `shutdown`; a
    `distributed.Client` passed in stays the caller's to close.
    """
    _require_distributed()
    from distributed import Client

    if isinstance(cluster, Client):
        return ClusterExecutor(cluster)
    if not isinstance(cluster, str):
        raise TypeError(
            f"cluster must be a scheduler address such as 'tcp://gpu-box:8786' or a "
            f"distributed.Client, got {cluster!r}"
        )
    client = Client(cluster, timeout=timeout, set_as_default=False)
    return ClusterExecutor(client, own_client=True)


def executor_for(executor: Executor | str | Client | None) -> Executor | None:
    """What the analyzer runs its jobs on: ``executor`` itself, or one on a cluster.

    An `Executor` (or None) is returned as it is; a scheduler address or a
    `distributed.Client` gives a `ClusterExecutor` (see `cluster_executor`).
    """
    if executor is None or isinstance(executor, Executor):
        return executor
    if isinstance(executor, str):
        return cluster_executor(executor)
    client_type = getattr(sys.modules.get("distributed"), "Client", None)  # never imported here
    if client_type is not None and isinstance(executor, client_type):
        return cluster_executor(executor)
    raise TypeError(
        f"executor must be a concurrent.futures.Executor, a distributed.Client or a scheduler "
        f"address such as 'tcp://gpu-box:8786', got {executor!r}"
    )
