"""``t2i demo``: serve the Gradio demo (Generate, Compare, Retrieve, About) on the bundled checkpoints.

    t2i demo                              # http://127.0.0.1:7860
    PORT=8080 t2i demo                    # or --port 8080
    t2i demo --host 0.0.0.0 --models my_checkpoints/ --browse-root ~/pictures

--models is a folder laid out like app/checkpoints (its manifest.json lists the
generators and galleries; `make checkpoints` writes the bundled one). --browse-root is the
only folder whose images the Retrieve tab may index (default: the current folder).
Requests go through Gradio's queue, --concurrency at a time. Ctrl-C stops the server.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from imagetext.cliargs import positive_int


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"{v} is not a port (1 to 65535)")
    return v


def add_parser(subparsers: Any, name: str, help_text: str) -> None:
    p = subparsers.add_parser(name, help=help_text, description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    env_port = os.environ.get("PORT")
    p.add_argument("--port", type=_port, default=None, help=f"port (default: $PORT or 7860{'; $PORT=' + env_port if env_port else ''})")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--models", type=Path, default=None, metavar="DIR", help="checkpoint folder with manifest.json (default: app/checkpoints)")
    p.add_argument("--browse-root", type=Path, default=None, metavar="DIR",
                   help="the folder whose images the Retrieve tab may index (default: the current folder)")
    p.add_argument("--concurrency", type=positive_int, default=4, help="requests served at once (default 4)")
    p.add_argument("--no-warmup", action="store_true", help="do not load the first model before serving")
    p.set_defaults(func=_serve, _group_parser=p)


def _serve(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home (and none possible offline)
    from imagetext.errors import UserError

    from .demo import build_app, theme
    from .models import DemoModels

    port = args.port if args.port is not None else _port(os.environ.get("PORT", "7860"))
    root = args.browse_root.expanduser().resolve() if args.browse_root else None
    if root is not None and not root.is_dir():
        raise UserError(f"--browse-root {args.browse_root}: not a folder")
    t0 = time.perf_counter()
    models = DemoModels(args.models)
    if not args.no_warmup and models.generators:
        v, a = next(iter(models.generators))
        models.pipeline(v, a)  # the first request then answers at once
    app = build_app(models, root, args.concurrency)
    try:
        app.launch(server_name=args.host, server_port=port, prevent_thread_lock=True, quiet=True,
                   footer_links=["api"], theme=theme())
    except OSError as e:
        raise UserError(f"cannot listen on {args.host}:{port} ({e}); pick another --port") from None
    url = f"http://{args.host}:{port}"
    print(f"t2i demo: serving {len(models.generators)} generator(s) and {len(models.galleries)} gallery(ies) "
          f"at {url} (ready in {time.perf_counter() - t0:.1f} s; Ctrl-C stops)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        app.close()
    return 0
