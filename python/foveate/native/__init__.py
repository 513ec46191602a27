"""Layer 1, the ctypes layer: load foveate's patched libraries (llama, mtmd, ggml, foveate) and
bind their C API (`bindings`). Imports only `foveate.errors`."""
