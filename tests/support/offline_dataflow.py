"""Adapted from ../shared/examples/streaming/offline_dataflow.py.
Make DataflowRunner produce the *full* job JSON with zero network access.
Import before running the pipeline. Patches:
  * GoogleCloudOptions._warn_if_soft_delete_policy_enabled -> no-op (GCS bucket lookup; skipped only in dry_run)
  * DataflowApplicationClient.stage_file -> gs://... uploads are written under FAKE_GCS_ROOT instead
  * DataflowApplicationClient.submit_job_description -> never called if --template_location is used;
    patched to a no-op (returns None) so --dataflow_job_file works too.
"""
import logging
import os

from apache_beam.options.pipeline_options import GoogleCloudOptions
from apache_beam.runners.dataflow.internal import apiclient

FAKE_GCS_ROOT = os.environ["FAKE_GCS_ROOT"]
STAGED = []

def _no_soft_delete_check(self, arg_name):
    return None

def _local_stage_file(self, gcs_or_local_path, file_name, stream, mime_type=None, total_size=None):
    if gcs_or_local_path.startswith("gs://"):
        local_dir = os.path.join(FAKE_GCS_ROOT, gcs_or_local_path[len("gs://"):])
    else:
        local_dir = gcs_or_local_path
    os.makedirs(local_dir, exist_ok=True)
    with open(os.path.join(local_dir, file_name), "wb") as f:
        f.write(stream.read())
    STAGED.append(f"{gcs_or_local_path.rstrip('/')}/{file_name}")
    logging.getLogger(__name__).info("offline stage: %s/%s", gcs_or_local_path, file_name)

def _no_submit(self, job):
    logging.getLogger(__name__).warning("offline_dataflow: NOT submitting job %s", job.proto.name)
    return None

GoogleCloudOptions._warn_if_soft_delete_policy_enabled = _no_soft_delete_check
apiclient.DataflowApplicationClient.stage_file = _local_stage_file
apiclient.DataflowApplicationClient.submit_job_description = _no_submit

# --- tf.Transform: tft_beam.Context.create_base_temp_dir() calls tf.io.gfile.makedirs(<temp_dir>/tftransform_tmp)
# at *graph construction* time. With a gs:// temp_dir TF's C++ GCS filesystem (libcurl) tries
# www.googleapis.com -- invisible to Python socket audit hooks. Skip gs:// makedirs during the offline check;
# guard other gfile calls on gs:// so any further construction-time GCS access is reported.
try:
    import tensorflow as _tf
    _orig_makedirs = _tf.io.gfile.makedirs
    TF_GCS_CALLS = []
    def _makedirs(path):
        if str(path).startswith("gs://"):
            TF_GCS_CALLS.append(("makedirs", str(path)))
            return None
        return _orig_makedirs(path)
    _tf.io.gfile.makedirs = _makedirs
    for _name in ("exists", "glob", "listdir", "isdir", "copy", "rename", "remove", "rmtree"):
        _orig = getattr(_tf.io.gfile, _name)
        def _guard(*a, __orig=_orig, __name=_name, **kw):
            if a and str(a[0]).startswith("gs://"):
                TF_GCS_CALLS.append((__name, str(a[0])))
                raise RuntimeError(f"offline_dataflow: tf.io.gfile.{__name} on {a[0]}")
            return __orig(*a, **kw)
        setattr(_tf.io.gfile, _name, _guard)
except ImportError:
    pass
