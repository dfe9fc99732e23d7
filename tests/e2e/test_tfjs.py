"""The pushed penguin model in a browser: its TF.js export (`beam_ml.model.tfjs`) loaded by @tensorflow/tfjs from npm
in a real headless Chromium predicts 50 of the eval split's rows as the SavedModel does (within 1e-4), with the page,
TF.js, the model and the rows served from loopback and no other network (`Browser(serve=...)`). Screenshots of the
page go to the test's temporary directory."""
import json
import os
import shutil

import numpy as np
import pytest

from beam_ml.model.artifact import SERVING_RAW_SIGNATURE, class_names
from beam_ml.model.tfjs import MODEL_FILE, SIGNATURE_FILE, export_tfjs
from tests.support.browser import Browser
from tests.support.paths import PENGUINS_CONFIG, PENGUINS_CSV, ROOT
from tests.support.serving_checks import eval_rows

pytestmark = pytest.mark.e2e

PAGE_DIR = os.path.join(ROOT, "tests", "support", "tfjs")  # index.html, and `npm ci` puts @tensorflow/tfjs here
TFJS_BUNDLE = os.path.join(PAGE_DIR, "node_modules", "@tensorflow", "tfjs", "dist", "tf.min.js")
ROWS = 50
TOLERANCE = 1e-4


def saved_model_outputs(model_dir: str, rows: list[dict]) -> np.ndarray:
    """The SavedModel's `serving_raw` answer to `rows`, in TensorFlow."""
    import tensorflow as tf
    serve = tf.saved_model.load(model_dir).signatures[SERVING_RAW_SIGNATURE]
    specs = serve.structured_input_signature[1]
    return serve(**{name: tf.constant([row[name] for row in rows], spec.dtype)
                    for name, spec in specs.items()})["outputs"].numpy()


@pytest.fixture(scope="module")
def tfjs_export(launched_penguins, tmp_path_factory) -> tuple[str, dict]:
    """The pushed penguin model exported for TF.js: (the pushed model dir, what `export_tfjs` wrote)."""
    _, manifest = launched_penguins
    model_dir = manifest["pushed_model_dir"]
    return model_dir, export_tfjs(model_dir, str(tmp_path_factory.mktemp("tfjs") / "model"))


def test_the_export_is_a_graph_model_with_what_a_page_feeds_it(tfjs_export):
    model_dir, written = tfjs_export
    assert {MODEL_FILE, SIGNATURE_FILE} <= set(written["files"]) and written["bytes"] == sum(written["files"].values())
    assert any(name.endswith(".bin") for name in written["files"])  # the weights
    with open(os.path.join(written["out_dir"], MODEL_FILE)) as f:
        model = json.load(f)
    assert model["format"] == "graph-model" and model["convertedBy"] == "TensorFlow.js Converter v4.22.0"
    # The vocabularies are filled by the model's initializer graph, from constants (beam_ml.model.portable).
    assert {"HashTableV2", "LookupTableImportV2"} <= {node["op"] for node in model["modelInitializer"]["node"]}
    with open(os.path.join(written["out_dir"], SIGNATURE_FILE)) as f:
        signature = json.load(f)
    assert signature == written["signature"]
    assert set(signature["inputs"]) == set(eval_rows(PENGUINS_CONFIG, PENGUINS_CSV, 1)[0])  # every raw column but the label
    assert signature["inputs"]["year"] == {"name": "year:0", "dtype": "int32", "saved_model_dtype": "int64"}
    assert signature["inputs"]["island"]["dtype"] == "string"
    assert signature["inputs"]["bill_length_mm"]["dtype"] == "float32"
    assert signature["outputs"]["outputs"]["shape"] == [-1, 3]
    assert signature["classes"] == list(class_names(model_dir))


@pytest.mark.parametrize("backend", ["webgl", "cpu"])
def test_tfjs_in_headless_chromium_predicts_as_the_saved_model_offline(tfjs_export, tmp_path, backend):
    model_dir, written = tfjs_export
    assert os.path.exists(TFJS_BUNDLE), "no @tensorflow/tfjs: `make test` installs it (npm ci in tests/support/tfjs)"
    rows = eval_rows(PENGUINS_CONFIG, PENGUINS_CSV, ROWS)
    site = tmp_path / "site"
    shutil.copytree(written["out_dir"], site / "model")
    shutil.copy(os.path.join(PAGE_DIR, "index.html"), site)
    shutil.copy(TFJS_BUNDLE, site)
    (site / "rows.json").write_text(json.dumps(rows))
    with Browser(serve=str(site)) as browser:
        load = browser.open(f"{browser.served_url}index.html?backend={backend}")
        predicted = browser.evaluate("window.predicted", await_promise=True)
        browser.screenshot(str(tmp_path / f"tfjs-{backend}.png"), selector="body")
        requests = browser.requests()
    assert load.console_errors == []
    assert predicted["backend"] == backend
    assert {f"{browser.served_url}{path}" for path in (f"index.html?backend={backend}", "tf.min.js", "rows.json",
                                                       "model/model.json", "model/signature.json")} <= set(requests)
    assert all(url.startswith(browser.served_url) for url in requests), requests  # loopback only
    outputs = np.array(predicted["outputs"])
    expected = saved_model_outputs(model_dir, rows)
    assert outputs.shape == expected.shape == (ROWS, 3)
    difference = float(np.abs(outputs - expected).max())
    print(f"TF.js ({backend}) vs SavedModel on {ROWS} eval rows: max abs difference {difference:.3g}")
    assert difference <= TOLERANCE
    assert len(set(expected.argmax(axis=1))) == 3  # the rows cover every species the model tells apart
