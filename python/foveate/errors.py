"""foveate's exceptions. Every message names the file (or input) and the problem."""


class FoveateError(Exception):
    """Base class of every error foveate raises on bad input or a failed run."""


class ModelError(FoveateError):
    """The language model file is missing, unreadable, not GGUF, truncated or unusable."""


class ProjectorError(FoveateError):
    """The image projector (mmproj) is missing, broken, or does not belong to the model."""


class ImageError(FoveateError):
    """The image cannot be opened, is empty, too small or too large."""


class DocumentError(ImageError):
    """A document (PDF, multi-page image, folder) cannot be read: corrupt, encrypted without
    the password, empty, or a page range past its end. An ImageError, so callers that catch
    bad images catch bad documents too."""


class ContextError(FoveateError):
    """The prompt plus image does not fit the context window (n_ctx)."""


class DecodeError(FoveateError):
    """llama.cpp failed while encoding, prefilling or decoding."""


class BuildError(FoveateError):
    """The native libraries are missing or are not foveate's patched build."""


class WorkerError(FoveateError):
    """A worker of a cluster run (`--ray`) died on every attempt at a page."""
