"""Layer 3, instruments for measuring foveate, not needed to read a page: the bench and stock
llama-bench (`bench`, `stock`, `synthetic_kv`), model files (`tiny_model`,
`deepseek_ocr_shape`), generated pages (`pages`), accuracy (`evaluate`) and the focal-layer
calibration (`calibrate`). Imports the engine and below."""
