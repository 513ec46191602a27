"""The Python front door: `Reader` (reader.py) and both methods on a llama-cpp-python `Llama`
(`llama_cpp_bridge.enable`). Imports only the layers below the surface; every other front
door reads pages through a Reader."""
from .reader import Reader

__all__ = ["Reader"]
