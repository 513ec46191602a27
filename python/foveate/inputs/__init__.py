"""Layer 1, what users hand in, checked in Python before the C side sees it: images
(`images`) and GGUF files (`gguf_check`). Imports only `foveate.errors`; loads no library."""
