"""beam_ml: an ML pipeline (ingest → validate → transform → train → evaluate → push) as one Beam graph.

tf.Transform and TFMA expect Keras 2 models, so `tf_keras` must back `tf.keras`; the switch only works when it is
set before TensorFlow is first imported, which is why it lives at the top of the package.
"""
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
# TensorFlow's C++ INFO/WARNING lines (CUDA probing, oneDNN notes) bury the pipeline's own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
