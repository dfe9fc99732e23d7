"""The streaming job: telemetry messages → readings (`parse`) → each sensor's event-time ordered windows (`order`) →
verdicts from the pushed window model (`model_scoring`) and/or online detectors (`online_scoring`, `detectors/`) →
an ensemble's vote and alerts (`verdicts`) → sinks (`sinks`); `plan` and `pipeline` are the job. Element types:
`elements` (and `beam_ml.core.windowing` for readings and windows)."""
