"""The TF.js export's checks and its page signature, without a converter run (tests/e2e/test_tfjs.py runs one, and
the export in a browser)."""
import pytest

from beam_ml.model.tfjs import VENV_ENV, export_tfjs, main, page_signature


def _spec(name: str, dtype: str, *dims: int) -> dict:
    return {"name": name, "dtype": dtype, "tensorShape": {"dim": [{"size": str(d)} for d in dims]}}


# As tensorflowjs_converter 4.22 writes a model.json signature: keys are not all tensor names, tables are inputs.
MODEL_JSON = {"signature": {
    "inputs": {"year": _spec("year:0", "DT_INT64", -1), "island:0": _spec("island:0", "DT_STRING", -1),
               "body_mass_g:0": _spec("body_mass_g:0", "DT_FLOAT", -1),
               "unknown_9:0": {**_spec("unknown_9:0", "DT_RESOURCE"), "resourceId": 775}},
    "outputs": {"outputs": _spec("Identity:0", "DT_FLOAT", -1, 3)}}}


def test_the_page_signature_names_each_raw_column_and_feeds_int64_as_int32():
    assert page_signature(MODEL_JSON, ("Adelie", "Gentoo", "Chinstrap")) == {
        "signature": "serving_raw",
        "inputs": {"body_mass_g": {"name": "body_mass_g:0", "dtype": "float32", "saved_model_dtype": "float32"},
                   "island": {"name": "island:0", "dtype": "string", "saved_model_dtype": "string"},
                   "year": {"name": "year:0", "dtype": "int32", "saved_model_dtype": "int64"}},
        "outputs": {"outputs": {"name": "Identity:0", "dtype": "float32", "shape": [-1, 3]}},
        "classes": ["Adelie", "Gentoo", "Chinstrap"]}
    assert page_signature(MODEL_JSON, None)["classes"] is None


def test_an_input_tfjs_cannot_hold_is_refused():
    model = {"signature": {**MODEL_JSON["signature"], "inputs": {"x:0": _spec("x:0", "DT_HALF", -1)}}}
    with pytest.raises(ValueError, match="DT_HALF"):
        page_signature(model, None)


def test_without_the_converter_venv_the_error_says_how_to_make_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(VENV_ENV, str(tmp_path / "no-venv"))
    with pytest.raises(RuntimeError, match="make tfjs"):
        export_tfjs(str(tmp_path / "model"), str(tmp_path / "out"))
    assert main([str(tmp_path / "model"), str(tmp_path / "out")]) == 1
    assert "make tfjs" in capsys.readouterr().err


def test_a_directory_with_files_is_not_exported_into(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "group1-shard1of1.bin").write_bytes(b"old")
    with pytest.raises(ValueError, match="not empty"):
        export_tfjs(str(tmp_path / "model"), str(tmp_path / "out"))
