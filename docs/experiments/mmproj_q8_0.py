"""Write a Q8_0 copy of an F16 mmproj: every 2-D weight with rows divisible by 32 quantized
(a benchmark helper: does the vision encoder get faster with quantized weights?)."""
import sys
import numpy as np
import gguf
src, dst = sys.argv[1], sys.argv[2]
r = gguf.GGUFReader(src)
arch = r.fields["general.architecture"].contents()
w = gguf.GGUFWriter(dst, arch)
for f in r.fields.values():
    if f.name == gguf.Keys.General.ARCHITECTURE or f.name.startswith("GGUF."):
        continue
    vt = f.types[0]; st = f.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
    w.add_key_value(f.name, f.contents(), vt, sub_type=st)
n_q = 0
for t in r.tensors:
    data = np.asarray(t.data)
    if t.tensor_type == gguf.GGMLQuantizationType.F16 and data.ndim == 2 and data.shape[1] % 32 == 0 \
            and t.name.endswith(".weight") and "patch_embd" not in t.name:
        q = gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(t.name, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        n_q += 1
    else:
        w.add_tensor(t.name, data, raw_dtype=t.tensor_type)
w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
print("quantized", n_q, "tensors")
