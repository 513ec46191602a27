"""The public path of fixation's trace pictures (`from foveate.surface.trace_picture import
save`, as the README and Reader.read's docstring give it); they live in surface/pipeline."""
from .pipeline.trace_picture import heatmap, reading_gif, save  # noqa: F401

__all__ = ["heatmap", "reading_gif", "save"]
