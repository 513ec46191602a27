"""Published OCR prompts and generation settings, per model family.

Each preset is a prompt a model's own project publishes (model card, official repository code
such as a prompt dictionary or a pipeline's default, official docs), copied verbatim, with
where it is published in `source`. Where only a third-party copy could be read (the official
page or file was not available), `source` says so. Nothing here is invented: a family whose
project publishes no OCR prompt has no presets (GLM-4.1V, "glm4v").

Conventions:

* `prompt` is the user text that follows the image. foveate inserts the model's image marker
  itself, so a published prompt that starts with one (DeepSeek-OCR's ``<image>\\n``, dots.ocr's
  ``<|img|><|imgpad|><|endofimg|>`` that its vLLM demo prepends, GLM-OCR's ``<image>``) is
  given without it, and `notes` says so. Everything else is kept exactly, whitespace
  included: MinerU2.5's prompts start with a newline, Qwen's ``"QwenVL HTML "`` ends with a
  space, dots.ocr's layout prompt ends with a newline.
* A project that places its text *before* the image (olmOCR's pipeline, the Qwen cookbooks'
  local `inference`) is noted in `notes`; the prompt is the same.
* `temperature` is what the project sets (0.0 = greedy, as None is); `max_tokens` and
  `repetition_penalty` likewise. Settings the dataclass has no field for (top_p, top_k,
  presence/frequency penalties, n-gram blocking) are told in comments beside the preset.
* `default=True` marks the family's general full-page preset, the one `--preset auto` uses.

One file of ~450 lines on purpose: it is a table, one record per published prompt with its
source beside it, read and reviewed as a whole.
"""
from __future__ import annotations

from dataclasses import dataclass

FAMILIES: tuple[str, ...] = (
    "qwen2vl", "qwen25vl", "qwen3vl", "deepseekocr", "deepseekocr2", "paddleocr",
    "lightonocr", "dotsocr", "glm4v", "glmocr", "hunyuanvl",
    # fine-tunes of Qwen2-VL / Qwen2.5-VL
    "olmocr", "nanonets-ocr", "mineru25",
    # document models (issue 36); granite-docling / SmolDocling: fine-tunes of Idefics3 / SmolVLM
    "idefics3", "lfm2vl", "qwen35", "internvl", "granite4vision", "minicpmv46", "docling",
)


@dataclass(frozen=True)
class Preset:
    name: str              # CLI name, e.g. "deepseek-ocr-markdown"; unique
    family: str            # one of FAMILIES
    prompt: str            # the user text that follows the image, exactly as published
    source: str            # where it is published: URL (+ file/section)
    max_tokens: int | None = None      # recommended output budget, if published
    temperature: float | None = None   # if published (None = greedy, foveate's default)
    repetition_penalty: float | None = None  # if published
    system: str | None = None          # system prompt if the project uses one
    default: bool = False  # the family's preset for `--preset auto`
    notes: str = ""        # one line: what output it gives (markdown, layout JSON, HTML table...)


# --- Qwen -------------------------------------------------------------------------------------

_QWEN25_OCR = ("https://github.com/QwenLM/Qwen2.5-VL/blob/main/cookbooks/ocr.ipynb")
_QWEN25_DOC = ("https://github.com/QwenLM/Qwen2.5-VL/blob/main/cookbooks/document_parsing.ipynb")
_QWEN_SYSTEM = "You are a helpful assistant."
_QWENVL_HTML_SYSTEM = (
    "You are an AI specialized in recognizing and extracting text from images. Your mission is "
    "to analyze the image document and generate the result in QwenVL Document Parser HTML "
    "format using specified tags while maintaining user privacy and data integrity.")

_QWEN2VL = (
    # Qwen2-VL's repository became QwenLM/Qwen2.5-VL; its OCR cookbook is the Qwen OCR example.
    Preset("qwen2vl-ocr", "qwen2vl", "Read all the text in the image.",
           _QWEN25_OCR + " (section '1. Full-page OCR for English text'; the cookbook of the "
           "Qwen2.5-VL repo, which QwenLM/Qwen2-VL moved to)",
           max_tokens=4096, system=_QWEN_SYSTEM, default=True,
           notes="plain text of the page (cookbook puts the text before the image)"),
    Preset("qwen2vl-output-all-text", "qwen2vl", "Output all text in the image",
           "https://github.com/QwenLM/Qwen2-VL/blob/main/README.md (AWQ/GPTQ quantization "
           "section: example calibration message, image then this text)",
           notes="plain text of the image"),
)

_QWEN25VL = (
    Preset("qwen25vl-ocr", "qwen25vl", "Read all the text in the image.",
           _QWEN25_OCR + " (section '1. Full-page OCR for English text'; inference(): "
           "max_new_tokens=4096, system 'You are a helpful assistant.')",
           max_tokens=4096, system=_QWEN_SYSTEM, default=True,
           notes="plain text of the page (cookbook puts the text before the image)"),
    Preset("qwen25vl-ocr-plain", "qwen25vl",
           "Please output only the text content from the image without any additional "
           "descriptions or formatting.",
           _QWEN25_OCR + " (section '2. Full Page OCR for Multilingual text')",
           max_tokens=4096, system=_QWEN_SYSTEM,
           notes="plain text only, multilingual"),
    Preset("qwen25vl-ocr-zh", "qwen25vl", "请识别出图中所有的文字。",
           _QWEN25_OCR + " (section '2. Full Page OCR for Multilingual text', Chinese prompt)",
           max_tokens=4096, system=_QWEN_SYSTEM,
           notes="plain text, Chinese instruction"),
    Preset("qwen25vl-spotting", "qwen25vl",
           "Spotting all the text in the image with line-level, and output in JSON format.",
           _QWEN25_OCR + " (section '3. Text Spotting')",
           max_tokens=4096, system=_QWEN_SYSTEM,
           notes="JSON list of {bbox_2d (absolute input-image pixels), text_content} per line"),
    Preset("qwen25vl-qwenvl-html", "qwen25vl", "QwenVL HTML ",
           _QWEN25_DOC + " (section '1. Document Parsing in QwenVL HTML Format'; system_prompt "
           "defined in the same cell)",
           system=_QWENVL_HTML_SYSTEM,
           notes="QwenVL HTML: the page as HTML with data-bbox on each element"),
    Preset("qwen25vl-html", "qwen25vl", "图片解析成html",
           _QWEN25_DOC + " (section '2. Generate ordinary html with Qwen2.5-VL')",
           notes="ordinary HTML of the page"),
)

_QWEN3_OCR = "https://github.com/QwenLM/Qwen3-VL/blob/main/cookbooks/ocr.ipynb"
_QWEN3_DOC = "https://github.com/QwenLM/Qwen3-VL/blob/main/cookbooks/document_parsing.ipynb"
# The current Qwen3-VL notebooks are too large for the stored copies read here; the OCR prompt
# is in the official notebook's history (commit f61c3cd) and in its Qwen3-VL revision as copied
# by the fork Firefly-llm/Qwen3-VL (system prompt skipped, max_new_tokens=4096). The "qwenvl
# markdown/html" and the JSON-format spotting prompts were read in third-party copies only.
# The Qwen3-VL README's generation hyperparameters (temperature 0.7, top_p 0.8, top_k 20,
# presence_penalty 1.5, out_seq_length 32768) are its benchmark-evaluation settings, not OCR
# advice, and are not applied here.
_QWEN3VL = (
    Preset("qwen3vl-ocr", "qwen3vl", "Read all the text in the image.",
           _QWEN3_OCR + " (section '1. Full-page OCR for English text'; inference(): "
           "max_new_tokens=4096, system prompt skipped)",
           max_tokens=4096, default=True,
           notes="plain text of the page (cookbook puts the text before the image)"),
    Preset("qwen3vl-ocr-plain", "qwen3vl",
           "Please output only the text content from the image without any additional "
           "descriptions or formatting.",
           _QWEN3_OCR + " (section '2. Full Page OCR for Multilingual text')",
           max_tokens=4096, notes="plain text only, multilingual"),
    Preset("qwen3vl-markdown", "qwen3vl", "qwenvl markdown",
           _QWEN3_DOC + " (QwenVL Markdown example; official notebook not readable here, "
           "prompt as reproduced in third-party copies of that notebook)",
           notes="QwenVL Markdown: tables in LaTeX and images as <!-- Image (x1, y1, x2, y2) --> "
                 "placeholders, 0-1000 coordinates"),
    Preset("qwen3vl-html", "qwen3vl", "qwenvl html",
           _QWEN3_DOC + " (QwenVL HTML example; official notebook not readable here, prompt as "
           "reproduced in third-party copies of that notebook)",
           notes="QwenVL HTML: elements with data-bbox, 0-1000 coordinates"),
    Preset("qwen3vl-spotting", "qwen3vl",
           "Spotting all the text in the image with line-level, and output in JSON format as "
           "[{'bbox_2d': [x1, y1, x2, y2], 'text_content': 'text'}, ...].",
           _QWEN3_OCR + " (section '3. Text Spotting'; official notebook not readable here, "
           "prompt as reproduced in a third-party conversion of that notebook)",
           max_tokens=4096,
           notes="JSON list of {bbox_2d (relative 0-999), text_content} per line"),
)

# --- DeepSeek-OCR -----------------------------------------------------------------------------

_DS = "https://github.com/deepseek-ai/DeepSeek-OCR"
_DS_CFG = _DS + " (DeepSeek-OCR-master/DeepSeek-OCR-vllm/config.py 'commonly used prompts'; " \
                "README 'Prompts examples'; sampling: README vLLM example)"
# Sampling (README, run_dpsk_ocr_*.py): temperature 0.0, max_tokens 8192, skip_special_tokens
# False, plus an n-gram no-repeat logits processor (ngram_size 30, window_size 90, <td>/</td>
# whitelisted) that has no field here.
_DEEPSEEKOCR = (
    Preset("deepseek-ocr-markdown", "deepseekocr", "<|grounding|>Convert the document to markdown.",
           _DS_CFG, max_tokens=8192, temperature=0.0, default=True,
           notes="markdown with <|ref|>/<|det|> layout boxes; published as '<image>\\n...', "
                 "<image>\\n stripped"),
    Preset("deepseek-ocr-free", "deepseekocr", "Free OCR.",
           _DS_CFG + " ('without layouts')", max_tokens=8192, temperature=0.0,
           notes="text without layout boxes; published as '<image>\\nFree OCR.', <image>\\n "
                 "stripped"),
    Preset("deepseek-ocr-image", "deepseekocr", "<|grounding|>OCR this image.",
           _DS_CFG + " ('other image')", max_tokens=8192, temperature=0.0,
           notes="text of a non-document image with grounding boxes; <image>\\n stripped"),
    Preset("deepseek-ocr-figure", "deepseekocr", "Parse the figure.",
           _DS_CFG + " ('figures in document')", max_tokens=8192, temperature=0.0,
           notes="a figure/chart parsed (e.g. to a table); <image>\\n stripped"),
)

_DS2 = ("https://github.com/deepseek-ai/DeepSeek-OCR-2 (README 'Main Prompts'; "
        "DeepSeek-OCR2-master/DeepSeek-OCR2-vllm/config.py; sampling: run_dpsk_ocr2_image.py)")
# Sampling: temperature 0.0, max_tokens 8192, n-gram no-repeat processor (ngram_size 20,
# window_size 90 for images, 20/50 for PDFs, <td>/</td> whitelisted).
_DEEPSEEKOCR2 = (
    Preset("deepseek-ocr2-markdown", "deepseekocr2",
           "<|grounding|>Convert the document to markdown.", _DS2,
           max_tokens=8192, temperature=0.0, default=True,
           notes="markdown with <|ref|>/<|det|> layout boxes; <image>\\n stripped"),
    Preset("deepseek-ocr2-free", "deepseekocr2", "Free OCR.", _DS2 + " ('without layouts')",
           max_tokens=8192, temperature=0.0,
           notes="text without layout boxes; <image>\\n stripped"),
)

# --- PaddleOCR-VL -----------------------------------------------------------------------------

_PADDLE = ("https://github.com/PaddlePaddle/PaddleX "
           "(paddlex/inference/pipelines/paddleocr_vl/pipeline.py, the PaddleOCR-VL pipeline "
           "of PaddleOCR 3.x: per-block text_prompt; max_new_tokens defaults to 4096)")
# The official pipeline crops layout blocks (PP-DocLayoutV2/V3) and sends each with the prompt
# for its label; with layout detection off, the whole page goes with the prompt_label's prompt.
_PADDLEOCR = (
    Preset("paddleocr-vl-ocr", "paddleocr", "OCR:", _PADDLE + " (text blocks; prompt_label 'ocr')",
           max_tokens=4096, default=True, notes="plain text"),
    Preset("paddleocr-vl-table", "paddleocr", "Table Recognition:",
           _PADDLE + " (table blocks)", max_tokens=4096,
           notes="table as OTSL (the pipeline converts it to HTML)"),
    Preset("paddleocr-vl-formula", "paddleocr", "Formula Recognition:",
           _PADDLE + " (formula blocks)", max_tokens=4096, notes="LaTeX"),
    Preset("paddleocr-vl-chart", "paddleocr", "Chart Recognition:",
           _PADDLE + " (chart blocks, use_chart_recognition)", max_tokens=4096,
           notes="chart data as a table"),
    Preset("paddleocr-vl-spotting", "paddleocr", "Spotting:",
           _PADDLE + " (spotting; PaddleOCR-VL-1.5)", max_tokens=4096,
           notes="text with location tokens, post-processed by the pipeline (PaddleOCR-VL-1.5)"),
    Preset("paddleocr-vl-seal", "paddleocr", "Seal Recognition:",
           _PADDLE + " (seal blocks, use_seal_recognition; PaddleOCR-VL-1.5)", max_tokens=4096,
           notes="text of a seal/stamp (PaddleOCR-VL-1.5)"),
)

# --- LightOnOCR -------------------------------------------------------------------------------

# LightOnOCR takes the page image with no text at all (the official client sends the image
# alone; third-party docs copying the model card add: "Do not include a system prompt or user
# prompt as the model has a tendency to repeat the prompt in its answer"). Sampling for
# LightOnOCR-1/2: temperature 0.2, top_p 0.9 (lightonocr/models.py: "the model card's
# sampling"); pages rendered to a 1540 px longest edge.
_LIGHTONOCR = (
    Preset("lightonocr-plain", "lightonocr", "",
           "https://github.com/lightonai/LightOnOCR (README 'Modes': plain = the image alone; "
           "lightonocr/client.py temperature 0.2, lightonocr/models.py top_p 0.9 for v1/v2); "
           "max_tokens 4096 from the model-card payload as reproduced on docs.doubleword.ai "
           "(third-party)",
           max_tokens=4096, temperature=0.2, default=True,
           notes="markdown (HTML tables, LaTeX math, reading order); no text prompt at all"),
    Preset("lightonocr-grounding", "lightonocr", "grounding",
           "https://github.com/lightonai/LightOnOCR (README 'Modes' and 'Tips': the image + the "
           "word 'grounding', temperature 0.1)",
           temperature=0.1,
           notes="LightOnOCR-3 only: markdown with ![label](x1,y1,x2,y2) boxes, 0-1000"),
)

# --- granite-docling / SmolDocling ---------------------------------------------------------------

# Both answer in DocTags (docling-core reads them: surface/pipeline/doctags.py). The
# instructions are SmolDocling's (the paper's appendix B "Instruction Description", and the
# "Supported Instructions" of both model cards); docling's own pipeline sends the page prompt
# greedy, stopping at </doctag> (the models end their turn right after it). SmolVLM itself
# ("idefics3"), LFM2-VL and Qwen3.5 publish no OCR prompt (no presets: foveate's own prompt).
_DOCLING_SRC = ("https://arxiv.org/abs/2503.11576 (SmolDocling, appendix B 'Instruction "
                "Description'); https://huggingface.co/ibm-granite/granite-docling-258M and "
                "https://huggingface.co/ds4sd/SmolDocling-256M-preview ('Supported Instructions')")
_DOCLING = (
    Preset("docling-page", "docling", "Convert this page to docling.", _DOCLING_SRC,
           default=True, notes="DocTags of the whole page (foveate read converts them: --format markdown, json, html)"),
    Preset("docling-table", "docling", "Convert table to OTSL.", _DOCLING_SRC,
           notes="a table (cropped) as OTSL DocTags"),
    Preset("docling-formula", "docling", "Convert formula to LaTeX.", _DOCLING_SRC,
           notes="a formula (cropped) as LaTeX"),
    Preset("docling-code", "docling", "Convert code to text.", _DOCLING_SRC,
           notes="a code block (cropped) as text"),
    Preset("docling-chart", "docling", "Convert chart to table.", _DOCLING_SRC,
           notes="a chart (cropped) as a table"),
)

# --- dots.ocr ---------------------------------------------------------------------------------

_DOTS = ("https://github.com/rednote-hilab/dots.ocr (dots_ocr/utils/prompts.py "
         "dict_promptmode_to_prompt; sampling: dots_ocr/parser.py defaults temperature 0.1, "
         "top_p 1.0, max_completion_tokens 16384)")
_DOTS_LAYOUT_ALL = """Please output the layout information from the PDF image, including each layout element's bbox, its category, and the corresponding text content within the bbox.

1. Bbox format: [x1, y1, x2, y2]

2. Layout Categories: The possible categories are ['Caption', 'Footnote', 'Formula', 'List-item', 'Page-footer', 'Page-header', 'Picture', 'Section-header', 'Table', 'Text', 'Title'].

3. Text Extraction & Formatting Rules:
    - Picture: For the 'Picture' category, the text field should be omitted.
    - Formula: Format its text as LaTeX.
    - Table: Format its text as HTML.
    - All Others (Text, Title, etc.): Format their text as Markdown.

4. Constraints:
    - The output text must be the original text from the image, with no translation.
    - All layout elements must be sorted according to human reading order.

5. Final Output: The entire output must be a single JSON object.
"""
_DOTS_LAYOUT_ONLY = (
    "Please output the layout information from this PDF image, including each layout's bbox "
    "and its category. The bbox should be in the format [x1, y1, x2, y2]. The layout "
    "categories for the PDF document include ['Caption', 'Footnote', 'Formula', 'List-item', "
    "'Page-footer', 'Page-header', 'Picture', 'Section-header', 'Table', 'Text', 'Title']. Do "
    "not output the corresponding text. The layout result should be in JSON format.")
# The vLLM demo sends f"<|img|><|imgpad|><|endofimg|>{prompt}"; that image marker is foveate's.
_DOTSOCR = (
    Preset("dotsocr-ocr", "dotsocr", "Extract the text content from this image.",
           _DOTS + " (prompt_ocr)", max_tokens=16384, temperature=0.1, default=True,
           notes="text/markdown of the page without Page-header and Page-footer"),
    Preset("dotsocr-layout", "dotsocr", _DOTS_LAYOUT_ALL,
           _DOTS + " (prompt_layout_all_en, the parser's default)",
           max_tokens=16384, temperature=0.1,
           notes="layout JSON: bbox, category, text (Markdown; tables HTML; formulas LaTeX)"),
    Preset("dotsocr-layout-only", "dotsocr", _DOTS_LAYOUT_ONLY,
           _DOTS + " (prompt_layout_only_en)", max_tokens=16384, temperature=0.1,
           notes="layout JSON: bbox and category, no text"),
    Preset("dotsocr-web", "dotsocr", "Parsing the layout info of this webpage image with format json:\n",
           _DOTS + " (prompt_web_parsing, added with dots.ocr-1.5 / dots.mocr)",
           max_tokens=16384, temperature=0.1,
           notes="layout JSON of a webpage screenshot (dots.ocr-1.5 / dots.mocr)"),
    Preset("dotsocr-scene", "dotsocr", "Detect and recognize the text in the image.",
           _DOTS + " (prompt_scene_spotting, added with dots.ocr-1.5 / dots.mocr)",
           max_tokens=16384, temperature=0.1,
           notes="scene-text spotting (dots.ocr-1.5 / dots.mocr)"),
)

# --- GLM ----------------------------------------------------------------------------------------

# GLM-4.1V (glm4v): the official zai-org/GLM-V repository and model card publish no OCR prompt.

_GLMOCR = ("https://github.com/zai-org/GLM-OCR (glmocr/config.yaml page_loader "
           "task_prompt_mapping and generation parameters; examples/finetune/README.md "
           "'3.4 Prompt Settings')")
# Sampling (config.yaml): max_tokens 8192, temperature 0.0, top_p 0.00001, top_k 1,
# repetition_penalty 1.1. The pipeline crops PP-DocLayout-V3 regions and sends each with the
# prompt for its kind; the finetune README shows the image first, e.g. "<image>Text Recognition:".
_GLMOCR_PRESETS = (
    Preset("glmocr-text", "glmocr", "Text Recognition:", _GLMOCR + " (text)",
           max_tokens=8192, temperature=0.0, repetition_penalty=1.1, default=True,
           notes="text/markdown; published as '<image>Text Recognition:', <image> stripped"),
    Preset("glmocr-table", "glmocr", "Table Recognition:", _GLMOCR + " (table)",
           max_tokens=8192, temperature=0.0, repetition_penalty=1.1,
           notes="table (HTML); <image> stripped"),
    Preset("glmocr-formula", "glmocr", "Formula Recognition:", _GLMOCR + " (formula)",
           max_tokens=8192, temperature=0.0, repetition_penalty=1.1,
           notes="LaTeX formula; <image> stripped"),
)

# --- HunyuanOCR ---------------------------------------------------------------------------------

_HY = ("https://github.com/Tencent-Hunyuan/HunyuanOCR (README 'Application-oriented Prompts'; "
       "sampling: README vLLM example temperature 0, max_tokens 16384, and "
       "Hunyuan-OCR-master/Hunyuan-OCR-vllm/run_hy_ocr.py top_k 1, repetition_penalty 1.0)")
# Every official example sends an empty system message ({"role": "system", "content": ""}).
_HY_KW = dict(max_tokens=16384, temperature=0.0, repetition_penalty=1.0, system="")
_HUNYUANVL = (
    Preset("hunyuan-ocr-parse", "hunyuanvl",
           "Extract all information from the main body of the document image and represent it "
           "in markdown format, ignoring headers and footers. Tables should be expressed in HTML "
           "format, formulas in the document should be represented using LaTeX format, and the "
           "parsing should be organized according to the reading order.",
           _HY + " (Document Parsing, English)", default=True,
           notes="markdown of the main body (HTML tables, LaTeX formulas), no headers/footers",
           **_HY_KW),
    Preset("hunyuan-ocr-parse-zh", "hunyuanvl",
           "提取文档图片中正文的所有信息用 markdown 格式表示，其中页眉、页脚部分忽略，表格用 html 格式表达，"
           "文档中公式用 latex 格式表示，按照阅读顺序组织进行解析。",
           _HY + " (Document Parsing, Chinese)",
           notes="as hunyuan-ocr-parse, Chinese instruction", **_HY_KW),
    Preset("hunyuan-ocr-text", "hunyuanvl", "Extract the text in the image.",
           _HY + " (General Parsing, English)", notes="plain text", **_HY_KW),
    Preset("hunyuan-ocr-text-zh", "hunyuanvl", "提取图中的文字。",
           _HY + " (General Parsing, Chinese)", notes="plain text, Chinese instruction",
           **_HY_KW),
    Preset("hunyuan-ocr-spotting", "hunyuanvl",
           "Detect and recognize text in the image, and output the text coordinates in a "
           "formatted manner.", _HY + " (Spotting, English)",
           notes="text lines with coordinates", **_HY_KW),
    Preset("hunyuan-ocr-spotting-zh", "hunyuanvl", "检测并识别图片中的文字，将文本坐标格式化输出。",
           _HY + " (Spotting, Chinese; the prompt of the README's code examples)",
           notes="text lines with coordinates, Chinese instruction", **_HY_KW),
    Preset("hunyuan-ocr-formula", "hunyuanvl",
           "Identify the formula in the image and represent it using LaTeX format.",
           _HY + " (Document Parsing: formula)", notes="LaTeX", **_HY_KW),
    Preset("hunyuan-ocr-table", "hunyuanvl", "Parse the table in the image into HTML.",
           _HY + " (Document Parsing: table)", notes="HTML table", **_HY_KW),
    Preset("hunyuan-ocr-chart", "hunyuanvl",
           "Parse the chart in the image; use Mermaid format for flowcharts and Markdown for "
           "other charts.", _HY + " (Document Parsing: chart)",
           notes="Mermaid (flowcharts) or Markdown (other charts)", **_HY_KW),
)

# --- fine-tunes -----------------------------------------------------------------------------

_OLMOCR = "https://github.com/allenai/olmocr (olmocr/prompts/prompts.py {}; sampling: " \
          "olmocr/pipeline.py build_page_query MAX_TOKENS 8000, first-attempt temperature 0.1)"
# olmocr/pipeline.py puts the text before the image; TEMPERATURE_BY_ATTEMPT raises the
# temperature on retries (0.1, 0.1, 0.2, 0.3, ...). Pages are rendered to a 1288 px longest side.
_OLMOCR_PRESETS = (
    Preset("olmocr-v4", "olmocr",
           "Attached is one page of a document that you must process. Just return the plain "
           "text representation of this document as if you were reading it naturally. Convert "
           "equations to LateX and tables to HTML.\n"
           "If there are any figures or charts, label them with the following markdown syntax "
           "![Alt text describing the contents of the figure](page_startx_starty_width_height.png)\n"
           "Return your output as markdown, with a front matter section on top specifying "
           "values for the primary_language, is_rotation_valid, rotation_correction, is_table, "
           "and is_diagram parameters.",
           _OLMOCR.format("build_no_anchoring_v4_yaml_prompt, the pipeline's prompt since v0.3"),
           max_tokens=8000, temperature=0.1, default=True,
           notes="markdown with YAML front matter (language, rotation, table/diagram flags); "
                 "HTML tables; olmOCR-7B-0825 / olmOCR-2"),
    Preset("olmocr-yaml", "olmocr",
           "Attached is one page of a document that you must process. Just return the plain "
           "text representation of this document as if you were reading it naturally. Convert "
           "equations to LateX and tables to markdown.\n"
           "Return your output as markdown, with a front matter section on top specifying "
           "values for the primary_language, is_rotation_valid, rotation_correction, is_table, "
           "and is_diagram parameters.",
           _OLMOCR.format("build_no_anchoring_yaml_prompt, the v0.2 pipeline's prompt"),
           max_tokens=8000, temperature=0.1,
           notes="markdown with YAML front matter; markdown tables; olmOCR-7B-0725"),
)

_NANONETS_CARD = (
    "Extract the text from the above document as if you were reading it naturally. Return the "
    "tables in html format. Return the equations in LaTeX representation. If there is an image "
    "in the document and image caption is not present, add a small description of the image "
    "inside the <img></img> tag; otherwise, add the image caption inside <img></img>. "
    "Watermarks should be wrapped in brackets. Ex: <watermark>OFFICIAL COPY</watermark>. Page "
    "numbers should be wrapped in brackets. Ex: <page_number>14</page_number> or "
    "<page_number>9/22</page_number>. Prefer using ☐ and ☑ for check boxes.")
_NANONETS = (
    Preset("nanonets-ocr-markdown", "nanonets-ocr", _NANONETS_CARD,
           "https://huggingface.co/nanonets/Nanonets-OCR-s (model card usage: transformers "
           "example with system 'You are a helpful assistant.', vLLM example temperature 0.0, "
           "max_tokens 15000); the card itself was not readable here, text as reproduced "
           "verbatim in third-party copies of it",
           max_tokens=15000, temperature=0.0, system=_QWEN_SYSTEM, default=True,
           notes="markdown with HTML tables, LaTeX, <img>, <watermark>, <page_number>, ☐/☑; "
                 "the <img></img> etc. are output tags, not image markers"),
    Preset("nanonets-ocr-docext", "nanonets-ocr",
           "Extract the text from the above document as if you were reading it naturally. "
           "Return the tables in html format. Watermarks should be wrapped in brackets. Ex: "
           "<watermark>OFFICIAL COPY</watermark>. Page numbers should be wrapped in brackets. "
           "Ex: <page_number>14</page_number> or <page_number>9/22</page_number>. Prefer using "
           "☐ and ☑ for check boxes.",
           "https://github.com/NanoNets/docext (docext/core/pdf2md/pdf2md.py user_prompt; "
           "temperature 0.0; --max_gen_tokens default 10000 in docext/app/args.py)",
           max_tokens=10000, temperature=0.0,
           notes="markdown with HTML tables, <watermark>, <page_number>, ☐/☑ (docext pdf2md)"),
)

_MINERU = ("https://github.com/opendatalab/mineru-vl-utils (mineru_vl_utils/mineru_client.py "
           "DEFAULT_PROMPTS and DEFAULT_SAMPLING_PARAMS; DEFAULT_SYSTEM_PROMPT in "
           "vlm_client/base_client.py)")
# MinerU2.5 is two-step: "\nLayout Detection:" on the page resized to 1036x1036, then each
# block cropped and sent with its kind's prompt. Sampling (MinerUSamplingParams): temperature
# 0.0, top_p 0.01, top_k 1, repetition_penalty 1.0, no_repeat_ngram_size 100, and for
# recognition presence_penalty 1.0 with frequency_penalty 0.05 (0.005 for tables); layout
# detection uses presence/frequency 0. No max_new_tokens is set. The image goes before the text.
_MINERU_KW = dict(temperature=0.0, repetition_penalty=1.0, system=_QWEN_SYSTEM)
_MINERU25 = (
    Preset("mineru25-text", "mineru25", "\nText Recognition:", _MINERU + " ([default])",
           default=True, notes="text of a text block (leading newline as published)",
           **_MINERU_KW),
    Preset("mineru25-table", "mineru25", "\nTable Recognition:", _MINERU + " (table)",
           notes="table as OTSL (mineru-vl-utils converts it to HTML)", **_MINERU_KW),
    Preset("mineru25-formula", "mineru25", "\nFormula Recognition:", _MINERU + " (equation)",
           notes="LaTeX formula", **_MINERU_KW),
    Preset("mineru25-layout", "mineru25", "\nLayout Detection:", _MINERU + " ([layout])",
           notes="layout: <|box_start|>x1 y1 x2 y2<|box_end|><|ref_start|>type<|ref_end|> per "
                 "block, 0-1000, optional rotation token",
           **_MINERU_KW),
)

PRESETS: tuple[Preset, ...] = (
    *_QWEN2VL, *_QWEN25VL, *_QWEN3VL, *_DEEPSEEKOCR, *_DEEPSEEKOCR2, *_PADDLEOCR,
    *_LIGHTONOCR, *_DOTSOCR, *_GLMOCR_PRESETS, *_HUNYUANVL,
    *_OLMOCR_PRESETS, *_NANONETS, *_MINERU25, *_DOCLING,
)

_BY_NAME: dict[str, Preset] = {p.name: p for p in PRESETS}


def presets_for(family: str) -> list[Preset]:
    """The presets of a family (FAMILIES key), in table order; [] when it has none."""
    return [p for p in PRESETS if p.family == family]


def preset(name: str) -> Preset:
    """The preset of that name; ValueError naming the known presets otherwise."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(p.name for p in PRESETS)
        raise ValueError(f"unknown preset {name!r}; known presets: {known}") from None


def default_preset(family: str) -> Preset | None:
    """The family's `--preset auto` preset; None for a family without published prompts."""
    return next((p for p in PRESETS if p.family == family and p.default), None)
