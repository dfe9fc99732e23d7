"""The text example (examples/text: manual-page descriptions → command, library function or file format): TF-IDF
features, trained with a Keras model and with a scikit-learn logistic regression; both are blessed above 0.75
accuracy on the eval split (the largest class is 40% of the rows)."""
import os

import pytest

from tests.support.jobs import job_args, run_job
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e

TEXT_CONFIG = os.path.join(ROOT, "examples", "text", "config.yaml")


@pytest.mark.parametrize("module", ["transforms.manpages", "transforms.manpages_sklearn"])
def test_tfidf_text_classifiers_are_blessed_above_075_accuracy(module, tmp_path):
    code, manifest = run_job(*job_args(tmp_path, "text", config=TEXT_CONFIG, module=module))
    assert code == 0, manifest.get("error")
    assert manifest["counts"]["read"] == 994 and manifest["counts"]["dead_letter"] == 0
    assert manifest["blessed"] is True, manifest["threshold_failures"]
    assert manifest["metrics"]["sparse_categorical_accuracy"] >= 0.75
    assert manifest["pushed_model_dir"]
