"""Writing on s3://, for jobs that keep runs or models on S3: TensorFlow's file API given S3, and empty files that
Beam's S3 filesystem can write.

Beam's own S3 filesystem (`apache-beam[aws]`) reads the inputs and writes Beam's files; TensorFlow writes SavedModels,
the transform graph and records through `tf.io.gfile`, which has s3:// only with tensorflow-io's filesystem plugin.
`enable()` loads it, configured from AWS's standard environment as boto3 reads it: `AWS_ENDPOINT_URL_S3` or
`AWS_ENDPOINT_URL` becomes tensorflow-io's `S3_ENDPOINT` (and an http:// one `S3_USE_HTTPS=0`), `AWS_DEFAULT_REGION`
its `AWS_REGION`; keys, session tokens and profiles are read by the AWS SDK itself. (tf.Transform imports
tensorflow-io whenever it is installed; beam_ml has TensorFlow use S3 only after `enable()`, for run and model paths:
inputs on S3 are read by Beam's filesystem either way.)

Beam 2.66's S3 uploader completes an empty file's multipart upload with no part, which S3 refuses (MalformedXML: a
multipart upload needs one part, and an empty last part is allowed), so an empty dead-letter file failed the run.
`enable()` gives such a file its one empty part; only on the Beam release this was checked against.

tensorflow-io 0.37.1 (the release for TF 2.16) aborts at interpreter exit once its S3 client has been used ("pure
virtual method called", exit code 134: tensorflow/io#2039, fixed upstream after that release). A process that
enabled it leaves with `beam_ml.core.runtime.exit_now`, as every beam_ml entry point does; the jobs' workers load it
through `beam_ml.core.s3_worker` (a Beam plugin the launcher adds), and a Beam worker's exit is not its result.
"""
from __future__ import annotations

import os
from typing import Optional

WORKER_PLUGIN = "beam_ml.core.s3_worker"  # the module Beam's workers import to enable() there (--beam_plugins)
_ENABLED: list[bool] = []  # [whether tensorflow-io's S3 filesystem is loaded], once a process


def enable() -> Optional[str]:
    """Gives TensorFlow's file API the s3:// filesystem in this process; None once it has it, else why not."""
    if not _ENABLED:
        _upload_empty_files()
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and "S3_ENDPOINT" not in os.environ:
            os.environ["S3_ENDPOINT"] = endpoint
            if endpoint.startswith("http://"):
                os.environ.setdefault("S3_USE_HTTPS", "0")
        if os.environ.get("AWS_DEFAULT_REGION"):
            os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
        try:
            import tensorflow_io  # noqa: F401  (registers the s3 filesystem with TensorFlow)
            _ENABLED.append(True)
        except ImportError:
            _ENABLED.append(False)
    return None if _ENABLED[0] else "tensorflow-io, which gives TensorFlow's file API s3://, is not installed"


def _upload_empty_files() -> None:
    import apache_beam as beam
    from apache_beam.io.aws import s3io
    if beam.__version__ != "2.66.0":
        return
    finish = s3io.S3Uploader.finish

    def finish_with_a_part(uploader: s3io.S3Uploader) -> None:
        if not uploader.buffer and not uploader.parts and uploader.last_error is None:
            uploader._write_to_s3(b"")  # pylint: disable=protected-access
        finish(uploader)

    s3io.S3Uploader.finish = finish_with_a_part


def enabled() -> bool:
    """Whether this process gave TensorFlow s3:// (a run or model path on S3): its workers need it too."""
    return bool(_ENABLED) and _ENABLED[0]
