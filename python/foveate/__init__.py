"""foveate: fast OCR with quantized vision-language models on a patched llama.cpp."""
from .errors import (BuildError, ContextError, DecodeError, DocumentError, FoveateError,
                     ImageError, ModelError, ProjectorError)

__version__ = "0.1.0"
__all__ = ["Reader", "Result", "enable", "FoveateError", "ModelError", "ProjectorError", "ImageError",
           "DocumentError", "ContextError", "DecodeError", "BuildError", "__version__"]


def __getattr__(name):  # load the native libraries only when the API is used
    if name in ("Reader",):
        from .surface.api import Reader
        return Reader
    if name == "enable":   # fixation / merging on a llama-cpp-python Llama
        from .surface.api.llama_cpp_bridge import enable
        return enable
    if name == "Result":
        from .engine.core import Result
        return Result
    raise AttributeError(name)
