"""beam_ml: an ML pipeline (ingest → validate → transform → train → evaluate → push) as one Beam graph.

tf.Transform and TFMA expect Keras 2 models, so `tf_keras` must back `tf.keras`; the switch only works when it is
set before TensorFlow is first imported, which is why it lives at the top of the package.

Google client libraries warn at import time about Python 3.11's end of support in 2027: not actionable by users, and
it buries the output of a job or of `python -m beam_ml.report`; silenced here, before any of them is imported.
"""
import os
import warnings

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ log lines (CUDA probing on a machine without GPUs, oneDNN notes) bury the pipeline's own output;
# its errors still reach Python as exceptions. TF_CPP_MIN_LOG_LEVEL=0 in the environment brings them back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
