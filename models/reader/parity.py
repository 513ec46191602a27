"""Check that the PyTorch twin (model.py) and llama.cpp compute the same thing: export a
model (random or a checkpoint) to GGUF, read a page with teacher forcing in both, compare
logits at every answer position. Run before training on a new architecture.

    python models/reader/parity.py [--ckpt models/reader/work/ckpt.pt] [--rows 3]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import train as T  # noqa: E402


def llama_logits(model_path, mmproj_path, img, answer_ids):
    from foveate.engine.core import Engine
    from foveate.inputs.images import load_page

    eng = Engine(str(model_path), str(mmproj_path), n_ctx=2048, threads=2)
    page = load_page(img)
    n_past, _ = eng.prefill_page(page)
    out = []
    for j, tok in enumerate([None] + answer_ids[:-1]):
        if tok is not None:
            eng._decode_one(tok, n_past)
            n_past += 1
        out.append(eng.logits().copy())
    eng.close()
    return np.stack(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt")
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--std", type=float, default=0.08, help="init std for a random model")
    a = ap.parse_args()
    torch.manual_seed(0)
    tok = T.CharTokenizer()
    if a.ckpt:
        ck = torch.load(a.ckpt)
        model = T.Reader(T.ReaderShape(**ck["shape"]))
        model.load_state_dict(ck["model"])
    else:
        model = T.Reader(T.shape_for(tok))
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.normal_(1.0 if n.endswith("ln1.weight") or "norm" in n or "ln" in n else 0.0,
                          a.std if "ln" not in n and "norm" not in n else 0.1)
    with torch.no_grad():  # compare against the weights as stored (F16)
        for p in model.parameters():
            p.copy_(p.half().float())
    model.eval()
    x, pre, suf, tgt = T.make_batch(tok, "heldout", [7], a.rows)
    _, prompt = tok.chat()
    answer = [int(t) for t in tgt[0] if t != -100]
    with torch.no_grad():
        ref = model(x, pre, suf)[0, len(prompt) - 1:len(prompt) - 1 + len(answer)].numpy()
    img = T.P.render(T.P.make_lines(T.P._rng("heldout", 7), T.P.PageSpec(cols=T.COLS, rows=a.rows)),
                     T.P.PageSpec(cols=T.COLS, rows=a.rows))
    with tempfile.TemporaryDirectory() as d:
        f16, mm = T.export(model, Path(d), quants=())
        got = llama_logits(f16, mm, img, answer)
    err = np.abs(got - ref).max(axis=1)
    scale = np.abs(ref).max(axis=1)
    agree = (got.argmax(1) == ref.argmax(1)).mean()
    print(f"positions {len(answer)}  max|diff| {err.max():.4g}  max|logit| {scale.max():.4g}  "
          f"rel {float((err / scale).max()):.4g}  argmax agreement {agree:.3f}")
    print("first positions diff:", np.round(err[:5], 4), " torch argmax acc vs target:",
          (ref.argmax(1) == np.array(answer)).mean())
    return 0 if (err / scale).max() < 0.02 else 1


if __name__ == "__main__":
    sys.exit(main())
