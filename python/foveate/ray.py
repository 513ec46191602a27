"""foveate on a Ray cluster (`pip install 'foveate[ray]'`): `read_dataset` turns documents
into a lazy Ray dataset of pages read by actors that each hold one Reader; `foveate read
INPUT... -o OUT --ray [ADDRESS]` writes it into OUT as a local run does (resumable).

>>> import foveate.ray
>>> ds = foveate.ray.read_dataset(["scans/"], "model.gguf", "mmproj.gguf", fixation=0.05)
>>> ds.write_parquet("pages/")
"""
from .surface.ray.workers import COLUMNS, PageReader, connect, read_dataset

__all__ = ["COLUMNS", "PageReader", "connect", "read_dataset"]
