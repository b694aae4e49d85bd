"""Make tests/models/formats/tokenizer: a tokenizer converted with openvino-tokenizers (a string input, token ids
out), as OVMS serves next to LLMs. Built from a WordPiece vocabulary written here, so nothing is downloaded.

Run by hand, never in CI, from the repository root:

    python3.11 -m venv /tmp/gen-tok
    /tmp/gen-tok/bin/pip install openvino==2026.4.1 openvino-tokenizers==2026.4.1.0 transformers tokenizers
    /tmp/gen-tok/bin/python scripts/format_models/tokenizer_model.py

It checks that OpenVINO, with the tokenizers extension, gives the Hugging Face tokenizer's own ids, and writes
expected.json (input strings, and each output's values by name).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import FORMATS

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
WORDS = ["the", "model", "server", "serves", "models", "hello", "world", "open", "vino", "##s", "##ing", ",", "."]
TEXTS = ["Hello world", "the model server serves models.", "hello unknownword"]
"""Inputs: in-vocabulary words, punctuation and a word the vocabulary lacks ([UNK])."""


def hugging_face_tokenizer():  # -> transformers.PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocabulary = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    tokenizer = Tokenizer(models.WordPiece(vocabulary, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocabulary["[CLS]"]), ("[SEP]", vocabulary["[SEP]"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        model_input_names=["input_ids", "attention_mask"],
    )


def main() -> None:
    import openvino as ov
    import openvino_tokenizers
    import tokenizers
    import transformers

    directory = FORMATS / "tokenizer"
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    hf = hugging_face_tokenizer()
    ov.save_model(openvino_tokenizers.convert_tokenizer(hf), str(directory / "openvino_tokenizer.xml"))
    want = {name: np.asarray(values) for name, values in hf(TEXTS, padding=True, return_tensors="np").items()}

    core = ov.Core()  # openvino_tokenizers' import added its extension to every Core
    model = core.read_model(str(directory / "openvino_tokenizer.xml"))
    result = core.compile_model(model, "CPU").create_infer_request().infer([np.array(TEXTS)])
    got = {port.get_any_name(): value for port, value in result.items()}
    for name, values in want.items():
        if not np.array_equal(got[name], values):
            raise SystemExit(f"{name}: OpenVINO gives {got[name]}, Hugging Face {values}")
    expected = {
        "format": "tokenizer",
        "framework": f"openvino-tokenizers {openvino_tokenizers.__version__}, transformers {transformers.__version__}, "
        f"tokenizers {tokenizers.__version__}",
        "openvino": ov.get_version(),
        "inputs": [_port(port) for port in model.inputs],
        "outputs": [_port(port) for port in model.outputs],
        "input_values": TEXTS,
        "output_values": {name: got[name].tolist() for name in sorted(got)},
    }
    (directory / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(json.dumps(expected))


def _port(port) -> dict:
    datatype = {"string": "BYTES", "i64": "INT64", "i32": "INT32"}[port.get_element_type().get_type_name()]
    shape = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
    return {"name": port.get_any_name(), "datatype": datatype, "shape": shape}


if __name__ == "__main__":
    main()
