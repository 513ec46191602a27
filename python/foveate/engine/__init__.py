"""Layer 2, the engine: one model + projector, image in, text out (`core.Engine`), and the
fixation and merge settings on raw llama/mtmd contexts (`controls`, `merging`, `focal_store`),
shared with the llama-cpp-python bridge; `notes` says when a bundled reader cannot read a
page. Imports `native`, `inputs` and `errors`."""
