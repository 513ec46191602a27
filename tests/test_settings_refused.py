"""Settings that mean nothing are refused, whether or not the feature they tune is on
(issue 21): the CLI with a one-line message and a non-zero exit, the API with a ValueError
naming the setting, the server with a 400. Before, with fixation off, `--focal-layers 99`,
`--fixation-sample 100000` or `--temp -1` read the page as if they were not there."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from foveate.engine.core import Sampling

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "models" / "reader"
MODEL = BUNDLED / "foveate-reader-q8_0.gguf"
MMPROJ = BUNDLED / "foveate-reader-mmproj-f16.gguf"
PAGE = BUNDLED / "sample-page.png"
FOVEATE = [sys.executable, "-m", "foveate"]

CLI_REFUSED = [
    (["--focal-layers", "99"], "focal layers [99] out of range: the model has 4 layers"),
    (["--focal-layers", "-1"], "focal layer must be >= 0, got -1"),
    (["--focal-layers", "a,b"], "--focal-layers takes 'auto' or layer indices"),
    (["--fixation-sample", "100000"], "fixation sample must be in [0, 4096], got 100000"),
    (["--fixation-k-min", "-3"], "fixation k_min must be >= 1, got -3"),
    (["--fixation-refresh", "-2"], "fixation refresh interval must be >= 1, got -2"),
    (["--fixation-dilation", "-1"], "fixation dilation must be >= 0, got -1"),
    (["--temp", "-1"], "temperature must be a number >= 0, got -1.0"),
    (["--top-p", "7"], "top_p must be in (0, 1], got 7.0"),
    (["--top-k", "-2"], "top_k must be an integer >= 0"),
    (["--min-p", "1.5"], "min_p must be in [0, 1], got 1.5"),
    (["--repeat-penalty", "0"], "repeat_penalty must be a number > 0"),
    (["-b", "-1"], "n_batch (-b) must be an integer >= 1, got -1"),
]


@pytest.mark.parametrize("flags, message", CLI_REFUSED, ids=lambda x: " ".join(x) if isinstance(x, list) else "")
def test_the_cli_refuses_a_meaningless_setting_with_fixation_off(flags, message):
    r = subprocess.run(FOVEATE + ["read", str(PAGE), "-m", str(MODEL), "--mmproj", str(MMPROJ),
                                  "-n", "4", *flags], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and r.stdout == "", (r.returncode, r.stdout)
    err = r.stderr.strip().splitlines()
    assert err and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert message in err[-1] and err[-1].startswith("foveate: "), err[-1]


def test_the_same_flags_pass_when_they_mean_something():
    """The checks refuse only what is meaningless: valid values read the page."""
    r = subprocess.run(FOVEATE + ["read", str(PAGE), "-m", str(MODEL), "--mmproj", str(MMPROJ),
                                  "-n", "8", "--focal-layers", "1", "--fixation-sample", "0",
                                  "--fixation-k-min", "1", "--fixation-refresh", "2", "--temp", "0",
                                  "--top-p", "1", "-b", "64"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip(), r.stderr[-2000:]


API_REFUSED = [
    (dict(focal_layers=[99]), "out of range"),
    (dict(focal_layers="a,b"), "focal layers are 'auto' or layer indices"),
    (dict(fixation_sample=100000), "fixation sample"),
    (dict(fixation_k_min=-3), "fixation k_min"),
    (dict(fixation_refresh=-2), "fixation refresh interval"),
    (dict(fixation_refresh=1.5), "fixation refresh interval must be an integer"),
    (dict(n_batch=-1), "n_batch"),
]


@pytest.mark.parametrize("kwargs, message", API_REFUSED, ids=lambda x: str(x) if isinstance(x, dict) else "")
def test_the_api_refuses_a_meaningless_reader_setting(kwargs, message):
    from foveate import Reader

    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        Reader(MODEL, MMPROJ, **kwargs)


@pytest.mark.parametrize("kwargs, message", API_REFUSED + [
    (dict(fixation=2), r"fixation ratio must be in \[0, 1\]"), (dict(merge=1.5), "merge keep"),
    (dict(preset="nope"), "unknown preset"), (dict(parallel=0), "parallel must be"),
    (dict(image_min_tokens=9, image_max_tokens=3), "image_min_tokens 9 > image_max_tokens 3"),
], ids=lambda x: str(x) if isinstance(x, dict) else "")
def test_check_settings_refuses_what_the_reader_would_without_loading(kwargs, message):
    """Reader.check_settings (what `read --ray`'s driver runs): the Reader's own refusal,
    from the headers alone; valid settings pass it."""
    from foveate import Reader

    pattern = message if "\\" in message else message.replace("(", r"\(").replace("[", r"\[")
    with pytest.raises(ValueError, match=pattern):
        Reader.check_settings(MODEL, MMPROJ, **kwargs)
    with pytest.raises(ValueError, match=pattern):
        Reader(MODEL, MMPROJ, **kwargs)
    Reader.check_settings(MODEL, MMPROJ, fixation=0.05, focal_layers=[1], merge="auto",
                          parallel=2, preset="none", n_gpu_layers=99, threads=3)


def test_check_settings_refuses_what_reader_takes_no_keyword_for_and_a_missing_projector():
    from foveate import Reader

    with pytest.raises(TypeError, match="fixation_max_tokens"):
        Reader.check_settings(MODEL, MMPROJ, fixation_max_tokens=4)
    with pytest.raises(TypeError, match="fixation_max_tokens"):
        Reader(MODEL, MMPROJ, fixation_max_tokens=4)
    with pytest.raises(ValueError, match="image projector"):
        Reader.check_settings(MODEL, None)


@pytest.mark.parametrize("knobs, name", [
    (dict(temperature=-1), "temperature"), (dict(top_p=7), "top_p"), (dict(top_p=0), "top_p"),
    (dict(top_k=-1), "top_k"), (dict(min_p=-0.1), "min_p"), (dict(repeat_penalty=-1), "repeat_penalty"),
    (dict(repeat_last_n=-5), "repeat_last_n"), (dict(seed=-1), "seed"),
    (dict(temperature=float("nan")), "temperature")])
def test_sampling_refuses_meaningless_knobs_even_when_greedy(knobs, name):
    with pytest.raises(ValueError, match=f"^{name} must be"):
        Sampling(**knobs)


def test_a_reader_read_refuses_a_negative_temperature():
    from foveate import Reader

    with Reader(MODEL, MMPROJ, n_ctx=2048) as r:
        with pytest.raises(ValueError, match="temperature must be a number >= 0"):
            r.read(PAGE, max_tokens=4, temperature=-1)
        assert r.read(PAGE, max_tokens=4).text   # and it goes on reading
