"""moto's server on 127.0.0.1 in a thread: the AWS emulator of the integration tests and bench.

moto's in-process ``mock_aws`` does not intercept aiobotocore's HTTP, so asyncloop talks to
moto's server over real HTTP instead, through ``endpoint_url``. moto is a test and benchmark
dependency, not a runtime one: it is imported when the server starts.

moto keeps its state per process, not per server: two `MotoServer`s in one process share
queues and functions, and `reset` clears both.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import TracebackType
    from typing import Self

__all__ = ("MotoServer",)

# Never 0.0.0.0 (ThreadedMotoServer's default): the emulator answers to this machine only
_HOST = "127.0.0.1"
# Bypass any HTTP(S)_PROXY from the environment: these requests are for 127.0.0.1 only
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MotoServer:
    """moto's `ThreadedMotoServer` bound to 127.0.0.1, ready for Lambda without Docker.

    ``with MotoServer() as moto:`` starts it (`start`) and stops it (`stop`); `endpoint_url`
    is ``http://127.0.0.1:<port>``; `reset` clears every service's state between tests.
    With ``lambda_docker=False`` (the default) functions are created and invoked without
    running their code: Event answers 202, RequestResponse 200 with the payload echoed, and an
    Invoke of a missing function also answers 202 (check existence with GetFunction).
    The `werkzeug` request log is silenced while the server runs.
    """

    def __init__(
        self, *, port: int = 0, lambda_docker: bool = False, timeout: float = 10.0
    ) -> None:
        self._port = port
        self._lambda_docker = lambda_docker
        self._timeout = timeout
        self._server: Any = None
        self._endpoint_url: str | None = None
        self._log_level: int | None = None

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``; RuntimeError before `start`."""
        if self._endpoint_url is None:
            raise RuntimeError("MotoServer is not running: call start() or use `with MotoServer()`")
        return self._endpoint_url

    def start(self) -> str:
        """Start the server thread, apply the Lambda config, and return `endpoint_url`."""
        if self._server is not None:
            raise RuntimeError("MotoServer is already running")
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise ImportError(
                "asyncloop.testing's MotoServer needs moto's server: pip install 'moto[server]>=5'"
            ) from exc
        werkzeug = logging.getLogger("werkzeug")
        self._log_level = werkzeug.level
        werkzeug.setLevel(logging.ERROR)
        server = ThreadedMotoServer(ip_address=_HOST, port=self._port, verbose=False)
        server.start()
        self._server = server
        host, port = server.get_host_and_port()
        self._endpoint_url = f"http://{host}:{port}"
        try:
            self.configure({"lambda": {"use_docker": self._lambda_docker}})
        except BaseException:
            self.stop()
            raise
        return self._endpoint_url

    def reset(self) -> None:
        """Delete every queue, function, role... (``POST /moto-api/reset``).

        moto keeps its config (the Lambda Docker switch) across a reset; the tests check that.
        """
        self._post("/moto-api/reset", b"")

    def configure(self, config: dict[str, Any]) -> dict[str, Any]:
        """``POST /moto-api/config`` (keys ``lambda``, ``batch``...); returns the config now."""
        answer: dict[str, Any] = json.loads(self._post("/moto-api/config", json.dumps(config)))
        return answer

    def get_config(self) -> dict[str, Any]:
        """``GET /moto-api/config``."""
        request = urllib.request.Request(self.endpoint_url + "/moto-api/config", method="GET")
        with _OPENER.open(request, timeout=self._timeout) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def stop(self) -> None:
        """Stop the server and restore the `werkzeug` log level; idempotent."""
        server, self._server = self._server, None
        self._endpoint_url = None
        if server is not None:
            server.stop()
        if self._log_level is not None:
            logging.getLogger("werkzeug").setLevel(self._log_level)
            self._log_level = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"MotoServer(endpoint_url={self._endpoint_url!r})"

    def _post(self, path: str, body: bytes | str) -> bytes:
        data = body.encode() if isinstance(body, str) else body
        request = urllib.request.Request(self.endpoint_url + path, data=data, method="POST")
        with _OPENER.open(request, timeout=self._timeout) as response:
            answer: bytes = response.read()
        return answer
