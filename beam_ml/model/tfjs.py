"""A pushed model for TensorFlow.js: its `serving_raw` signature as a TF.js graph model, and what a page feeds it.

    python -m beam_ml.model.tfjs MODEL_DIR OUT_DIR     # prints what was written as JSON
    python -m beam_ml.model.tfjs --serving_dir DIR OUT_DIR     # the newest pushed version

OUT_DIR gets `model.json` and its weight shards (`tensorflowjs_converter`'s graph-model format, loaded with
`tf.loadGraphModel`), and `signature.json`: for each raw column the input tensor to feed and its TF.js dtype, the
output, and the class names of a classifier:

    {"inputs": {"island": {"name": "island:0", "dtype": "string", "saved_model_dtype": "string"},
                "year": {"name": "year:0", "dtype": "int32", "saved_model_dtype": "int64"}, ...},
     "outputs": {"outputs": {"name": "Identity:0", "dtype": "float32", "shape": [-1, 3]}},
     "classes": ["Adelie", "Gentoo", "Chinstrap"], "signature": "serving_raw"}

The converter takes the portable copy of the model (`beam_ml.model.portable`: TF.js does not fill tf.Transform's
vocabularies from their asset files) and only `serving_raw`: `serving_default` parses tf.Examples, an op TF.js does
not have. The rest of a tf.Transform graph (StringToHashBucketFast, SparseToDense, DenseBincount, the hash-table
ops) is in TF.js 4.22; it runs the lookups asynchronously only: call `model.executeAsync`, not `predict`. TF.js has
no int64: int64 inputs (and weights) become int32, so an int64 value outside ±2**31 cannot be fed.

The converter runs from its own venv, as tensorflowjs pins packages that the main venv's do not allow
(requirements-tfjs.txt says which): `make tfjs` builds `.venv-tfjs`; BEAM_ML_TFJS_VENV names another.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from typing import Optional, Sequence

from beam_ml.core import fileutil
from beam_ml.model.artifact import SERVING_RAW_SIGNATURE, class_names
from beam_ml.model.portable import write_portable_saved_model

VENV_ENV = "BEAM_ML_TFJS_VENV"
DEFAULT_VENV = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            ".venv-tfjs")
MODEL_FILE = "model.json"
SIGNATURE_FILE = "signature.json"
CONVERTER_TIMEOUT_SECONDS = 600

# TensorFlow's dtypes: (name in TensorFlow, as TF.js holds it; tfjs-converter's operation_mapper reads int64 as int32).
_DTYPES = {"DT_FLOAT": ("float32", "float32"), "DT_INT32": ("int32", "int32"), "DT_INT64": ("int64", "int32"),
           "DT_STRING": ("string", "string"), "DT_BOOL": ("bool", "bool")}


def converter_path() -> str:
    """`tensorflowjs_converter` of the TF.js venv; RuntimeError saying how to make one when it is missing."""
    venv = os.environ.get(VENV_ENV) or DEFAULT_VENV
    path = os.path.join(venv, "bin", "tensorflowjs_converter")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no tensorflowjs_converter at {path}: run `make tfjs` (a venv with requirements-tfjs.txt "
                           f"at {DEFAULT_VENV}) or set {VENV_ENV} to such a venv")
    return path


def _dtypes(tf_dtype: str) -> tuple[str, str]:
    if tf_dtype not in _DTYPES:
        raise ValueError(f"TF.js cannot feed or return a {tf_dtype} tensor")
    return _DTYPES[tf_dtype]


def page_signature(model_json: dict, classes: Optional[Sequence[str]]) -> dict:
    """What a page needs to call the converted model (`signature.json`, see the module docstring), from its
    `model.json`. The converter keys inputs inconsistently (`year`, `island:0`); the tensor name is the raw column."""
    signature = model_json["signature"]
    inputs = {}
    for spec in signature["inputs"].values():
        if spec["dtype"] == "DT_RESOURCE":  # a lookup table, filled by the model's initializer
            continue
        saved_model_dtype, dtype = _dtypes(spec["dtype"])
        inputs[spec["name"].split(":")[0]] = {"name": spec["name"], "dtype": dtype,
                                              "saved_model_dtype": saved_model_dtype}
    outputs = {key: {"name": spec["name"], "dtype": _dtypes(spec["dtype"])[1],
                     "shape": [int(d["size"]) for d in spec["tensorShape"].get("dim", [])]}
               for key, spec in signature["outputs"].items()}
    return {"signature": SERVING_RAW_SIGNATURE, "inputs": dict(sorted(inputs.items())), "outputs": outputs,
            "classes": list(classes) if classes else None}


def export_tfjs(model_dir: str, out_dir: str) -> dict:
    """Writes the TF.js graph model of `model_dir` (a local SavedModel with `serving_raw`) and its `signature.json`
    into `out_dir`, which must be new or empty (old weight shards would lie beside new ones). Returns {"out_dir",
    "files": {name: bytes}, "bytes", "signature"}. RuntimeError with the converter's message when it fails (an op
    TF.js does not have is named there)."""
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise ValueError(f"{out_dir} is not empty: export into a new directory")
    converter = converter_path()
    with tempfile.TemporaryDirectory(prefix="tfjs-portable-") as portable:
        write_portable_saved_model(model_dir, portable, [SERVING_RAW_SIGNATURE])
        done = subprocess.run(
            [converter, "--input_format=tf_saved_model", "--output_format=tfjs_graph_model",
             f"--signature_name={SERVING_RAW_SIGNATURE}", "--saved_model_tags=serve", portable, out_dir],
            capture_output=True, text=True, timeout=CONVERTER_TIMEOUT_SECONDS,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode != 0:
        raise RuntimeError(f"tensorflowjs_converter exited with {done.returncode}: {done.stderr.strip()[-3000:]}")
    with open(os.path.join(out_dir, MODEL_FILE)) as f:
        signature = page_signature(json.load(f), class_names(model_dir))
    fileutil.write_json(os.path.join(out_dir, SIGNATURE_FILE), signature)
    files = {name: os.path.getsize(os.path.join(out_dir, name)) for name in sorted(os.listdir(out_dir))}
    return {"out_dir": out_dir, "files": files, "bytes": sum(files.values()), "signature": signature}


def main(argv: Optional[Sequence[str]] = None) -> int:
    from beam_ml.model.push import latest_model
    parser = argparse.ArgumentParser(prog="python -m beam_ml.model.tfjs", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", metavar="[MODEL_DIR] OUT_DIR",
                        help="a SavedModel directory (unless --serving_dir) and the new directory to write")
    parser.add_argument("--serving_dir", help="a serving directory: its newest version")
    args = parser.parse_args(argv)
    if len(args.paths) != (1 if args.serving_dir else 2):
        parser.error("give MODEL_DIR OUT_DIR, or --serving_dir DIR OUT_DIR")
    model_dir = latest_model(args.serving_dir) if args.serving_dir else args.paths[0]
    if model_dir is None:
        parser.error(f"--serving_dir {args.serving_dir} has no pushed version")
    try:
        written = export_tfjs(model_dir, args.paths[-1])
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps({"model_dir": model_dir, **written}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
