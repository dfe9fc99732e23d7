"""The training job: `plan` resolves and checks a run, `pipeline` wires its stages (ingest → `validate` (TFDV) →
`transform` (tf.Transform) → `trainer` (the user's `run_fn`) → `evaluate` (TFMA, `batched_metrics`) → push), with
`windows` for sequence models, `leakage` and the user's module (`user_module`)."""
