"""The server front door: `foveate serve`, an OpenAI-compatible FastAPI app on one Reader
(app.py), its request checks (requests.py), concurrent requests batched (scheduler.py), and
its web page (web/index.html). Needs the server extra (fastapi, uvicorn)."""
from .app import create_app

__all__ = ["create_app"]
