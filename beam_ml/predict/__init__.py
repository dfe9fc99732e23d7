"""The batch prediction job: `plan` resolves the model and the input, `pipeline` predicts every row with Beam's
RunInference and keeps every row it cannot (dead letters)."""
