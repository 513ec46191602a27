"""`foveate serve`: the server front door (surface/server) on one Reader."""
from __future__ import annotations

import sys
from pathlib import Path

from . import flags as F


def add_parser(sub) -> None:
    sv = sub.add_parser("serve", help="OpenAI-compatible OCR server (pip install '.[server]')",
                        formatter_class=F.HELP)
    F.model_args(sv, ctx_default=None)
    sv.add_argument("-np", "--parallel", type=int, default=1, metavar="N",
                    help="requests decoding together (continuous batching; -c is shared, its "
                         "default is 4096 per request)")
    F.preset_arg(sv)
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on")
    sv.add_argument("--port", type=int, default=8080, help="port to listen on")
    sv.add_argument("--api-key", default=None, help="require Authorization: Bearer KEY")
    sv.add_argument("--model-name", default=None, help="the model id clients use (default: the model file's name without .gguf)")
    sv.add_argument("--queue", type=int, default=16, help="requests that may wait; more get 503")
    sv.add_argument("--max-image-mb", type=float, default=32.0, help="largest image or PDF accepted")
    sv.add_argument("--allow-local-files", action="store_true",
                    help="accept file:// image URLs (paths on the server's machine)")
    F.fixation_args(sv)
    F.merge_args(sv)
    sv.set_defaults(fn=cmd_serve)


def cmd_serve(a) -> int:
    try:
        import uvicorn

        from ..server import create_app
    except ImportError as e:
        raise SystemExit(f"foveate serve needs the server extra: pip install 'foveate[server]' "
                         f"(or '.[server]' in a checkout): {e}") from None
    from ..api import Reader

    if a.parallel < 1:
        raise ValueError(f"-np must be at least 1, got {a.parallel}")
    if a.max_image_mb <= 0 or a.queue < 0:
        raise ValueError(f"--max-image-mb must be > 0 and --queue >= 0, got {a.max_image_mb} "
                         f"and {a.queue}")
    if a.ctx_size is None:
        a.ctx_size = 4096 * a.parallel
    _log_to_stderr()
    reader = Reader(a.model, a.mmproj, parallel=a.parallel, preset=a.preset, **F.engine_kwargs(a))
    name = a.model_name or Path(a.model).stem
    app = create_app(reader, name, api_key=a.api_key,
                     queue=a.queue, max_image_bytes=int(a.max_image_mb * (1 << 20)),
                     allow_local_files=a.allow_local_files, parallel=a.parallel)
    # what llama-server says when it starts: the model, the settings, where it listens
    eng = reader.engine
    say = lambda line: print(f"foveate serve: {line}", file=sys.stderr, flush=True)
    say(f"model: {a.model} (id {name!r}), mmproj: {a.mmproj}")
    say(f"family: {eng.family.family.name if eng.family.family else 'unknown'}, n_ctx {eng.n_ctx}, "
        f"-np {a.parallel}, threads {eng.threads}, fixation {eng.fixation or 'off'}, "
        f"merge {a.merge}, queue {a.queue}, max image {a.max_image_mb:g} MB")
    if a.host not in ("127.0.0.1", "localhost", "::1") and not a.api_key:
        say(f"WARNING: listening on {a.host} without --api-key: anyone who can reach this port "
            f"can use the server")
    shown = f"[{a.host}]" if ":" in a.host else a.host
    say(f"listening on http://{shown}:{a.port} (web page at /, OpenAI API at /v1)")
    # an access line per request (uvicorn's, at info); idle keep-alive connections close
    # after 5 s (uvicorn); a body that stops arriving is answered 408 (server/limits.py)
    uvicorn.run(app, host=a.host, port=a.port, log_level="info", access_log=True,
                timeout_keep_alive=5, log_config=_UVICORN_LOGS)
    return 0


# uvicorn's default log config, with its startup chatter (the lines above say it) left out
_UVICORN_LOGS = {
    "version": 1, "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(message)s", "datefmt": "%H:%M:%S"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain",
                            "stream": "ext://sys.stderr"}},
    "loggers": {"uvicorn.error": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
                "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False}},
}


def _log_to_stderr() -> None:
    """foveate's own server log (a client that left mid-body, a request that hit a bug): one
    line each on stderr."""
    import logging

    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(asctime)s foveate: %(message)s", "%H:%M:%S"))
    log = logging.getLogger("foveate.serve")
    log.addHandler(h)
    log.setLevel(logging.INFO)
    log.propagate = False
