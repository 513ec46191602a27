"""Reading a page end to end through the real llama.cpp + mtmd path (tiny Qwen2.5-VL)."""
import json
import subprocess
import sys

import pytest
from PIL import Image


@pytest.mark.parametrize("quant", ["f16", "q8_0", "q4_k_m"])
def test_read_page_every_quant(models, page, quant):
    from foveate import Reader

    with Reader(models[quant], models["mmproj"], n_ctx=1024, threads=2) as r:
        res = r.read(page, max_tokens=12)
    st = res.stats
    # 448x224 page -> 32x16 patches of 14 px -> 16x8 = 128 tokens after the 2x2 merger
    assert st.image_tokens == 128
    assert st.prompt_tokens > st.image_tokens
    assert st.encode_ms > 0 and st.prefill_ms > 0 and st.decode_ms > 0
    assert st.tokens_generated == 12 or st.stop_reason == "eos"
    assert isinstance(res.text, str) and res.image == str(page)


def test_greedy_is_deterministic_and_inputs_agree(reader, page):
    a = reader.read(page, max_tokens=10)
    b = reader.read(page.read_bytes(), max_tokens=10)
    c = reader.read(Image.open(page), max_tokens=10)
    assert a.text == b.text == c.text
    assert a.stats.image_tokens == b.stats.image_tokens == c.stats.image_tokens


def test_different_pages_give_different_image_token_counts(reader):
    small = Image.new("RGB", (224, 224), "white")
    assert reader.read(small, max_tokens=1).stats.image_tokens == 64


def test_cli_read_json(models, page):
    out = subprocess.run(
        [sys.executable, "-m", "foveate", "read", str(page), str(page), "-m", str(models["q8_0"]),
         "--mmproj", str(models["mmproj"]), "-c", "1024", "-n", "5", "-t", "2", "--json"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert len(data) == 2
    assert data[0]["stats"]["image_tokens"] == 128
    assert data[0]["text"] == data[1]["text"]


def test_cli_read_text_sections(models, page):
    out = subprocess.run(
        [sys.executable, "-m", "foveate", "read", str(page), str(page), "-m", str(models["f16"]),
         "--mmproj", str(models["mmproj"]), "-c", "1024", "-n", "3", "-t", "2"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(f"==> {page} <==") == 2


def test_bench_prints_table_for_image_and_synthetic_tokens(models, page):
    for extra in (["--mmproj", str(models["mmproj"]), "--image", str(page)],
                  ["--image-tokens", "300"]):
        out = subprocess.run(
            [sys.executable, "-m", "foveate", "bench", "-m", str(models["q8_0"]), "-c", "1024",
             "-n", "4", "-r", "1", "-t", "2"] + extra, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        row = [ln for ln in out.stdout.splitlines() if ln.startswith("| foveate")]
        assert len(row) == 1
        cells = [c.strip() for c in row[0].strip("|").split("|")]
        assert int(cells[1]) == (128 if "--image" in extra else 300)
        assert float(cells[5]) > 0  # decode ms


def test_bench_page_time_shows_each_phase_and_its_share(models, page):
    out = subprocess.run(
        [sys.executable, "-m", "foveate", "bench", "--page-time", "-m", str(models["q8_0"]),
         "--mmproj", str(models["mmproj"]), "--image", str(page), "-n", "16", "-t", "2",
         "--fixation", "0.2", "--merge", "0.5"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rows = {c[0]: c for c in ([x.strip() for x in ln.strip("|").split("|")]
                              for ln in out.stdout.splitlines() if ln.startswith("| "))}
    assert set(rows) == {"config", "dense", "fixation 0.2", "merge 0.5", "merge 0.5 + fixation 0.2"}
    dense, merged = rows["dense"], rows["merge 0.5"]
    assert dense[1] == "128" and merged[1] == "128 -> 64"
    for name in ("dense", "fixation 0.2", "merge 0.5", "merge 0.5 + fixation 0.2"):
        r = rows[name]
        enc, mrg, pre, dec, tot = (float(x) for x in r[2:7])
        assert min(enc, mrg, pre, dec) >= 0 and tot > 0
        assert abs(enc + mrg + pre + dec - tot) < 0.02   # rounding of the printed cells
        shares = [float(x.rstrip("%")) for x in r[8].split(" / ")]
        assert abs(sum(shares) - 100) <= 2
    assert float(rows["dense"][3]) == 0.0 and float(rows["merge 0.5"][3]) > 0.0
    # the fixation rows share their merge setting's prefill (one page, decoded from one cache)
    assert rows["fixation 0.2"][4] == dense[4]


def test_bench_page_time_refuses_what_it_cannot_time(models, page):
    for extra, msg in ((["--image-tokens", "300"], "give --image and --mmproj"),
                       (["--mmproj", str(models["mmproj"]), "--image", str(page),
                         "--fixation", "0.1,0.2"], "one --fixation ratio")):
        out = subprocess.run([sys.executable, "-m", "foveate", "bench", "--page-time", "-m",
                              str(models["q8_0"]), *extra], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode != 0 and msg in out.stderr and "Traceback" not in out.stderr
