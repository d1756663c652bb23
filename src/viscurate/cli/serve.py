"""``viscurate serve`` (the REST API and the web app) and the ``api-key`` group that manages its keys.

    viscurate api-key create laptop
    viscurate serve --host 0.0.0.0 --port 8000
"""
from __future__ import annotations

import gc
import json
import os
import signal
import time
from pathlib import Path
from typing import Any, List, Optional

import typer

from ..errors import ViscurateError
from ..server import defaults as server_defaults
from .context import state
from .render import err_console

#: The commands of this module; the app adds them to ``viscurate``.
commands = typer.Typer()


@commands.command("serve")
def serve_cmd(host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything but loopback "
                                       "needs an API key (viscurate api-key create NAME)."),
              port: int = typer.Option(8000, "--port", "-p", help="Port."),
              threads: Optional[int] = typer.Option(None, "--threads", min=1, max=1000,
                                                    help="Requests handled at once, the others wait in "
                                                    "arrival order (default: 4 per core, 8 to 40)."),
              allowed_hosts: Optional[List[str]] = typer.Option(
                  None, "--allowed-host", help="A host name the server also answers for (repeatable), e.g. a "
                  "reverse proxy's; besides 127.0.0.1, localhost, ::1 and the address it listens on."),
              max_body_mib: float = typer.Option(server_defaults.MAX_BODY_BYTES / 2**20, "--max-body-mib", min=0.01, max=1024,
                                                 help="Largest JSON request body, MiB (413 beyond)."),
              max_upload_mib: float = typer.Option(server_defaults.MAX_UPLOAD_BYTES / 2**20, "--max-upload-mib", min=0.01, max=4096,
                                                   help="Largest image /v1/analyze takes, uploaded or fetched, MiB."),
              fetch_deadline: float = typer.Option(server_defaults.FETCH_DEADLINE_S, "--fetch-deadline", min=1, max=3600,
                                                   help="Seconds a whole URL fetch of /v1/analyze may take."),
              allow_private_urls: bool = typer.Option(False, "--allow-private-urls", help="Let URL fetches "
                                                      "(/v1/analyze, ingest jobs) reach loopback, private and "
                                                      "link-local addresses (refused by default)."),
              heavy_threads: int = typer.Option(server_defaults.HEAVY_THREADS, "--heavy-threads", min=1, max=64,
                                                help="Queries that scan free-form JSON run at once, apart from "
                                                "the request threads."),
              heavy_share: float = typer.Option(server_defaults.HEAVY_SHARE, "--heavy-share", min=0.01, max=1.0,
                                                help="Share of the time heavy queries get while other requests "
                                                "are in flight (1: no pacing)."),
              heavy_queue: int = typer.Option(server_defaults.HEAVY_QUEUE, "--heavy-queue", min=0, max=100_000,
                                              help="Heavy queries that may wait; one more is a 429.")) -> None:
    """Serve the REST API (OpenAPI document at /openapi.json) and the web app over this workspace."""
    try:
        import uvicorn

        from ..server.admission import LaneSettings
        from ..server.app import create_app, request_threads
    except ImportError as e:
        raise ViscurateError(f"the server needs the 'serve' extra: pip install 'viscurate[serve]' ({e})") from None
    from ..server.keys import KeyStore, check_bind, is_loopback
    from ..store.workspace import SERVER_FILE, Workspace, make_dirs

    home = Workspace(state.home).home
    store = KeyStore(home)
    check_bind(host, has_keys=bool(store.digests()))
    err_console.print(f"serving {home} on http://{host}:{port} "
                      f"({'API key required' if not is_loopback(host) else 'loopback only'}); web app at /")
    announce = home / SERVER_FILE  # so that a CLI write that finds a dataset busy can say who holds it
    make_dirs(announce.parent)  # 0700, like every folder of the workspace
    # (a file left by a killed server is simply replaced: running_server already ignores a dead pid)
    announce.write_text(json.dumps({"pid": os.getpid(), "url": f"http://{host}:{port}", "since": time.time()}))
    # uvicorn shuts down on SIGTERM, then raises it again under the handler it found: the default one
    # would end the process before the finally below; this one unwinds the stack
    signal.signal(signal.SIGTERM, _exit_on_signal)
    try:
        server_app = create_app(state.home, require_key=not is_loopback(host),
                                request_threads=threads or request_threads(), allowed_hosts=tuple(allowed_hosts or ()),
                                max_body_bytes=int(max_body_mib * 2**20), max_upload_bytes=int(max_upload_mib * 2**20),
                                fetch_deadline=fetch_deadline, allow_private_urls=allow_private_urls,
                                heavy_queries=LaneSettings(threads=heavy_threads, share=heavy_share,
                                                           max_waiting=heavy_queue))
        # the objects of every module loaded so far live as long as the process: out of the collector's
        # sight, its full collections no longer stall every request in flight for tens of milliseconds
        gc.collect()
        gc.freeze()
        uvicorn.run(server_app, host=host, port=port, log_level="info")
    finally:
        _withdraw_announcement(announce)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _withdraw_announcement(announce: Path) -> None:
    """Remove the server's ``running.json``, unless another server has announced itself since."""
    try:
        mine = json.loads(announce.read_text()).get("pid") == os.getpid()
    except (OSError, ValueError, AttributeError):
        return
    if mine:
        announce.unlink(missing_ok=True)


def _workspace_keys():
    """The API keys of the workspace ``--home`` chose."""
    from ..server.keys import KeyStore
    from ..store.workspace import Workspace
    return KeyStore(Workspace(state.home).home)


#: The ``viscurate api-key`` group; the app adds it under that name.
api_keys = typer.Typer(help="API keys of the server (stored as digests in the workspace).", no_args_is_help=True)


@api_keys.command("create")
def api_key_create(name: str = typer.Argument(..., help="A name to revoke it by later.")) -> None:
    """Create a key and print it (once: only its digest is kept)."""
    print(_workspace_keys().create(name))


@api_keys.command("list")
def api_key_list() -> None:
    """The keys' names and when they were made."""
    for name, created in _workspace_keys().names().items():
        print(f"{name}\t{created}")


@api_keys.command("revoke")
def api_key_revoke(name: str = typer.Argument(...)) -> None:
    """Revoke a key (a running server refuses it from its next request)."""
    _workspace_keys().revoke(name)
