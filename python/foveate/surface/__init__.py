"""Layer 4, what users call: the API (`api.Reader`), the CLI (`cli`) and fixation/merging on a
llama-cpp-python Llama (`llama_cpp_bridge.enable`). Imports every layer below; nothing
imports it except `foveate/__init__.py` and `__main__.py`."""
