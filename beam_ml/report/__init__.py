"""Reports: what a run did, as a self-contained HTML page (`beam_ml.report.page`), for any run directory with
`python -m beam_ml.report RUN_DIR`."""
