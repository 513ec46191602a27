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
    sv.add_argument("--model-name", default=None, help="the model id clients use (default: the file name)")
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

    if a.host not in ("127.0.0.1", "localhost", "::1") and not a.api_key:
        print(f"foveate serve: WARNING: listening on {a.host} without --api-key: anyone who can "
              f"reach this port can use the server", file=sys.stderr)
    if a.parallel < 1:
        raise ValueError(f"-np must be at least 1, got {a.parallel}")
    if a.ctx_size is None:
        a.ctx_size = 4096 * a.parallel
    reader = Reader(a.model, a.mmproj, parallel=a.parallel, preset=a.preset, **F.engine_kwargs(a))
    app = create_app(reader, a.model_name or Path(a.model).stem, api_key=a.api_key,
                     queue=a.queue, max_image_bytes=int(a.max_image_mb * (1 << 20)),
                     allow_local_files=a.allow_local_files, parallel=a.parallel)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning")
    return 0
