"""Lineage: every training run in ML Metadata (`store`), and the questions it answers (`queries`), also as
`python -m beam_ml.lineage`."""
