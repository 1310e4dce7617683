"""Running a real gateway (uvicorn, real sockets) in a background thread for tests."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

import httpx2
import uvicorn
import uvloop

from ailb.app import Gateway, create_app
from ailb.config import Settings, load_settings


class RunningGateway:
    def __init__(self, settings: Settings, load: Callable[[], Settings] | None = None) -> None:
        """`load`: what a reload reads (default: this process's environment)."""
        self.settings = settings
        self.app: Gateway = create_app(settings, load)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="on",
            log_config=None,
            access_log=False,
            http=self.app.http_protocol,  # httptools, counting connections
            loop="none",
            proxy_headers=False,
        )
        self.server = uvicorn.Server(config)
        self._loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self.server.serve(sockets=[self._sock]))

    def start(self) -> RunningGateway:
        self._thread.start()
        for _ in range(500):
            if self.server.started:
                return self
            if not self._thread.is_alive():
                self._release()  # nobody stops a gateway that did not start
                raise RuntimeError("gateway failed to start")
            threading.Event().wait(0.01)
        self.stop()
        raise RuntimeError("gateway did not start in 5 s")

    def _release(self) -> None:
        """Its loop and listening socket, closed now rather than left to the collector (whose
        ResourceWarning pytest reports against whichever later test it happens in)."""
        self._thread.join(15)
        if not self._loop.is_closed():
            self._loop.close()
        self._sock.close()

    def stop(self) -> None:
        self.server.should_exit = True
        self._release()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def runtime(self) -> Any:
        return self.app.runtime

    def call(self, coro: Any) -> Any:
        """Run a coroutine on the gateway's loop (to inspect or change its state)."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)


def env_for(
    config_yaml: str | None, tmp_path: Any, env: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The variables a test gateway reads: `env`, a data directory under tmp_path, any free
    gRPC port on 127.0.0.1 (the port it got is `runtime.grpc_port`) and the config file,
    written out."""
    values = dict(env or {})
    values.setdefault("AILB_DATA_DIR", str(tmp_path / "ailb_memory"))
    if os.environ.get("AILB_PRICES_CACHE"):  # the session's (tests/conftest.py)
        values.setdefault("AILB_PRICES_CACHE", os.environ["AILB_PRICES_CACHE"])
    values.setdefault("HOST", "127.0.0.1")  # the gRPC server binds it (HTTP: our own socket)
    values.setdefault("GRPC_PORT", "0")
    if config_yaml is not None:
        path = tmp_path / "ailb.yaml"
        path.write_text(config_yaml)
        values["AILB_CONFIG"] = str(path)
    return values


def settings_for(
    config_yaml: str | None, tmp_path: Any, env: Mapping[str, str] | None = None, **kw: Any
) -> Settings:
    return load_settings(env_for(config_yaml, tmp_path, env), **kw)


def create_key(url: str, master: str, name: str = "test", **fields: Any) -> dict[str, Any]:
    """A new AILB key through the admin API of the gateway at `url`: its JSON (the secret in
    "key")."""
    r = httpx2.post(
        url + "/api/keys",
        json={"name": name, **fields},
        headers={"authorization": f"Bearer {master}"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())
