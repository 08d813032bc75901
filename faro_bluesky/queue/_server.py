"""`QueueServer`: Redis, the RE Manager on a profile, and optionally its HTTP server.

Each piece is the stock program (``start-re-manager``, ``start-bluesky-httpserver``) in a
child process; this class only chooses their arguments, waits until each answers (by
asking it, with a timeout, never by sleeping), and shuts them down in an order that
keeps data: a running plan is paused and stopped (exit status "success", its documents
in the catalog), the environment closed (the worker closes the session), the manager
asked to exit, and Redis stopped last so it saves what the manager wrote.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ..cli._profile import MM_CONFIG_ENV, PROFILE_ENV, find_profile
from ._lists import EXISTING_FILE, PERMISSIONS_FILE, write_permissions
from ._processes import answers, pause_between_visits, script, terminate
from ._redis import RedisProcess
from ._worker import DATA_ENV, PUBLISH_ENV, SEED_ENV

__all__ = ["QueueServer"]

logger = logging.getLogger(__name__)

CONTROL = "tcp://127.0.0.1:60615"
"""The RE Manager's default control address (``qserver``'s default too)."""
INFO = "tcp://127.0.0.1:60625"
"""The RE Manager's default info address (console output)."""


class QueueServer:
    """Redis (local unless ``redis`` names one), the RE Manager, with ``http`` its HTTP server.

    Parameters
    ----------
    data : Path
        The catalog the worker's session writes to; ``data/queue`` keeps the state (lists,
        permissions, Redis snapshot, logs) unless ``state`` says otherwise.
    profile, mm_config, seed :
        As for ``faro-bluesky shell`` (the profile is resolved here, by `find_profile`).
    redis : str
        ``host:port`` of a running Redis; default: start Valkey (`RedisProcess`).
    redis_port : int
        Port of the local Valkey (None: a free one).
    control, info : str
        0MQ addresses the RE Manager binds (``qserver`` and `REManagerAPI` connect).
    publish : str
        0MQ proxy input the worker publishes documents to (``faro-bluesky status --follow``
        on the proxy's output).
    http : (host, port)
        Start the HTTP server there; its single-user key is ``api_key`` (default random).
    permissions : Path
        Your own user-group permissions file instead of the generated one.
    log : file
        Where the children's output goes (default: this process's).

    """

    def __init__(
        self,
        data: Path,
        *,
        profile: Path | None = None,
        mm_config: Path | None = None,
        seed: int = 0,
        redis: str | None = None,
        redis_port: int | None = None,
        control: str = CONTROL,
        info: str = INFO,
        publish: str | None = None,
        http: tuple[str, int] | None = None,
        api_key: str | None = None,
        state: Path | None = None,
        permissions: Path | None = None,
        redis_prefix: str = "faro",
        log: IO[str] | None = None,
    ) -> None:
        self.data = Path(data).resolve()
        self.state = Path(state or self.data / "queue").resolve()
        self.profile = find_profile(profile)
        self.mm_config, self.seed, self.publish = mm_config, seed, publish
        self.redis_address, self.redis_port, self.redis_prefix = redis, redis_port, redis_prefix
        self.control, self.info, self.http = control, info, http
        if api_key is not None and not api_key.isalnum():
            raise ValueError(
                f"api_key={api_key!r}: the HTTP server accepts letters and digits only "
                "(e.g. `openssl rand -hex 32`)"
            )
        self.api_key = api_key or (secrets.token_hex(16) if http else None)
        self.permissions = permissions
        self.log = log
        self.redis: RedisProcess | None = None
        self.manager: subprocess.Popen | None = None
        self.http_server: subprocess.Popen | None = None

    # ------------------------------------------------------------------ start
    def start(self, *, open_environment: bool = True, timeout: float = 120.0) -> QueueServer:
        """Start every piece; with ``open_environment`` also open the worker's session."""
        try:
            self.state.mkdir(parents=True, exist_ok=True)
            permissions = self.permissions or write_permissions(
                self.state / PERMISSIONS_FILE, self.profile
            )
            if self.redis_address is None:
                self.redis = RedisProcess(self.state / "redis", port=self.redis_port)
                self.redis_address = self.redis.address
            self.manager = self._spawn(self._manager_command(permissions), self._worker_env())
            if self.http is not None:  # starts beside the manager: it connects when asked
                http = script(
                    "start-bluesky-httpserver", "bluesky_httpserver.server", "start_server"
                )
                http += ["--host", self.http[0], "--port", str(self.http[1])]
                self.http_server = self._spawn(http, self._http_env())
            answers(self.api(), self.manager, "the RE Manager", timeout)
            if open_environment:
                self.open_environment(timeout, wait=False)
            if self.http_server is not None:
                answers(self.http_api(), self.http_server, "the HTTP server", timeout)
            if open_environment:
                self.open_environment(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def _manager_command(self, permissions: Path) -> list[str]:
        command = script(
            "start-re-manager", "bluesky_queueserver.manager.start_manager", "start_manager"
        )
        return [
            *command,
            "--startup-module", "faro_bluesky.queue.worker",
            "--existing-plans-devices", str(self.state / EXISTING_FILE),
            "--update-existing-plans-devices", "ENVIRONMENT_OPEN",
            "--user-group-permissions", str(permissions),
            "--user-group-permissions-reload", "ON_STARTUP",
            "--ignore-invalid-plans", "ON",  # a plan the queue cannot describe is logged
            "--redis-addr", str(self.redis_address),
            "--redis-name-prefix", self.redis_prefix,
            "--zmq-control-addr", self.control,
            "--zmq-info-addr", self.info,
            "--zmq-publish-console", "ON",
        ]  # fmt: skip

    def _worker_env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", PROFILE_ENV: str(self.profile)}
        env[DATA_ENV] = str(self.data)
        env[SEED_ENV] = str(self.seed)
        env.pop(PUBLISH_ENV, None)
        env.pop(MM_CONFIG_ENV, None)
        if self.publish:
            env[PUBLISH_ENV] = self.publish
        if self.mm_config is not None:
            env[MM_CONFIG_ENV] = str(Path(self.mm_config).resolve())
        return env

    def _http_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "QSERVER_ZMQ_CONTROL_ADDRESS": self.client_address(self.control),
            "QSERVER_ZMQ_INFO_ADDRESS": self.client_address(self.info),
            "QSERVER_HTTP_SERVER_SINGLE_USER_API_KEY": str(self.api_key),
        }

    def _spawn(self, command: Sequence[str], env: dict[str, str]) -> subprocess.Popen:
        logger.info("starting %s", " ".join(command))
        return subprocess.Popen(
            list(command),
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT if self.log is not None else None,
            start_new_session=True,  # Ctrl-C reaches faro-bluesky queue, which stops in order
        )

    def open_environment(self, timeout: float = 120.0, *, wait: bool = True) -> None:
        """Open the worker (the session on the profile); raise if its startup failed.

        ``wait=False`` only asks for it (if it is not open or opening).
        """
        api = self.api()
        try:
            status = api.status(reload=True)
            if not status["worker_environment_exists"] and status["manager_state"] == "idle":
                api.environment_open()
            if not wait:
                return
            api.wait_for_idle(timeout=timeout)
            if not api.status(reload=True)["worker_environment_exists"]:
                raise RuntimeError(
                    "the RE Manager could not open the environment: the worker failed to "
                    "load the profile (its traceback is in the RE Manager's output)"
                )
        finally:
            api.close()

    # ---------------------------------------------------------------- clients
    @staticmethod
    def client_address(address: str) -> str:
        """Where a client on this machine connects to a bound 0MQ ``address``.

        ``tcp://*:60615`` (every interface, for other machines) is reached locally at
        ``tcp://127.0.0.1:60615``.
        """
        for every in ("//*:", "//0.0.0.0:"):
            address = address.replace(every, "//127.0.0.1:")
        return address

    def api(self, **kwargs: Any) -> Any:
        """A `REManagerAPI` on the control address (close it when done)."""
        from bluesky_queueserver_api.zmq import REManagerAPI

        return REManagerAPI(
            zmq_control_addr=self.client_address(self.control),
            zmq_info_addr=self.client_address(self.info),
            **kwargs,
        )

    @property
    def http_uri(self) -> str | None:
        """``http://host:port`` of the HTTP server, if one was asked for."""
        return None if self.http is None else f"http://{self.http[0]}:{self.http[1]}"

    def http_api(self, **kwargs: Any) -> Any:
        """A `REManagerAPI` over HTTP, authorised with the single-user key."""
        from bluesky_queueserver_api.http import REManagerAPI

        if self.http_uri is None:
            raise RuntimeError("no HTTP server: start the QueueServer with http=(host, port)")
        api = REManagerAPI(http_server_uri=self.http_uri, **kwargs)
        api.set_authorization_key(api_key=self.api_key)
        return api

    # ------------------------------------------------------------------ stop
    def close(self, timeout: float = 60.0) -> None:
        """Stop a running plan (keeping its data), close the worker, stop every process."""
        try:
            if self.manager is not None and self.manager.poll() is None:
                self._stop_manager(timeout)
        finally:
            for process in (self.http_server, self.manager):
                terminate(process, timeout=10.0)
            if self.redis is not None:
                self.redis.close()

    def _stop_manager(self, timeout: float) -> None:
        try:
            api = self.api()
        except Exception:
            return
        try:
            api.wait_for_condition(  # not while it is opening or closing the environment
                lambda s: s["manager_state"] in ("idle", "paused", "executing_queue"),
                timeout=timeout,
            )
            status = api.status(reload=True)
            if status["manager_state"] == "executing_queue":
                api.queue_stop()  # no next item
            if status["re_state"] in ("running", "pausing", "paused"):
                pause_between_visits(api, timeout)
                if api.status(reload=True)["re_state"] == "paused":
                    api.re_stop()
                    api.wait_for_idle(timeout=timeout)
            if api.status(reload=True)["worker_environment_exists"]:
                api.environment_close()
                api.wait_for_idle(timeout=timeout)
            api.send_request(method="manager_stop")  # no wrapper in the API
            assert self.manager is not None
            self.manager.wait(timeout)
        except Exception:
            logger.exception("the RE Manager did not stop in order; terminating it")
        finally:
            api.close()
