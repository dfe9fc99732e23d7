"""The SKAB benchmark's window-model detector end to end on a small corpus laid out like SKAB's: per file, the batch
pipeline trains `transforms.skab`'s LSTM autoencoder on the first 400 rows and pushes it, and the replay scores the
rest through the streaming job's `ScoreWithModel`."""
import glob
import json
import os

import numpy as np
import pytest

from benchmarks.skab import main, outlier_metrics
from transforms.skab import CHANNELS

pytestmark = pytest.mark.e2e

HEADER = ["datetime", *(c.replace("_", " ") if c == "Volume_Flow_RateRMS" else c for c in CHANNELS)]


def _write_machine(path, rows: int, seed: int, fault: slice = slice(0, 0)) -> None:
    """Eight channels driven by one load, as the testbed's pump; during `fault` the pressure breaks away."""
    rng = np.random.default_rng(seed)
    load = 1 + 0.3 * np.sin(np.arange(rows) / 15) + rng.normal(0, 0.02, rows)
    values = np.column_stack([0.03 * load, 0.04 * load, 2 * load, 0.5 * load, 70 + 5 * load, 25 + load,
                              230 + 5 * load, 30 * load]) * (1 + rng.normal(0, 0.01, (rows, len(CHANNELS))))
    values[fault, CHANNELS.index("Pressure")] += 1.5
    anomaly = np.zeros(rows, dtype=int)
    anomaly[fault] = 1
    start = np.datetime64("2020-03-09T10:00:00") + np.timedelta64(seed * 3600, "s")
    labelled = fault.stop > 0
    lines = [";".join(HEADER + (["anomaly", "changepoint"] if labelled else []))]
    for i, (row, a) in enumerate(zip(values, anomaly)):
        when = str(start + np.timedelta64(i, "s")).replace("T", " ")
        labels = [f"{a}.0", f"{int(i in (fault.start, fault.stop))}.0"] if labelled else []
        lines.append(";".join([when, *(f"{v:.6g}" for v in row), *labels]))
    path.write_text("\n".join(lines) + "\n")


def test_the_lstm_autoencoder_trained_by_the_batch_pipeline_scores_skab_through_the_streaming_graph(tmp_path, capsys):
    data, work = tmp_path / "skab", tmp_path / "work"
    (data / "valve1").mkdir(parents=True)
    (data / "anomaly-free").mkdir()
    for n in range(2):
        _write_machine(data / "valve1" / f"{n}.csv", 700, seed=n, fault=slice(520, 600))
    _write_machine(data / "anomaly-free" / "anomaly-free.csv", 600, seed=5)
    assert main(["--data", str(data), "--detectors", "lstm_ae", "--workers", "2", "--work_dir", str(work)]) == 0
    printed = capsys.readouterr().out
    rows = [line.split("|") for line in printed.splitlines() if line.startswith("| beam_ml LSTM-AE")]
    f1, far, mar = (float(x) for x in rows[0][2:5])
    assert f1 > 0.8 and far < 10, printed  # the pressure's break is far outside what the first 400 rows showed
    assert "LSTM-AE incidents (gap 60 s):" in printed and "anomaly-free/anomaly-free.csv:" in printed
    # each file has its own run of the batch pipeline: trained on its first 400 rows, evaluated on the rest, pushed
    manifests = [json.load(open(m)) for m in glob.glob(str(work / "*" / "runs" / "*" / "run_manifest.json"))]
    assert len(manifests) == 3 and all(m["status"] == "succeeded" and m["pushed_model_dir"] for m in manifests)
    assert {m["counts"]["splits"]["train"] for m in manifests} == {400}
    assert all(os.path.isdir(m["pushed_model_dir"]) for m in manifests)
    assert outlier_metrics([np.array([0, 1])], [np.array([0, 1])]) == (1.0, 0.0, 0.0)


def test_a_file_too_short_to_train_on_and_score_is_named(tmp_path):
    (tmp_path / "valve1").mkdir()
    _write_machine(tmp_path / "valve1" / "0.csv", 405, seed=0, fault=slice(402, 404))
    with pytest.raises(ValueError, match="0.csv: 405 rows; training on the first 400"):
        main(["--data", str(tmp_path), "--detectors", "lstm_ae", "--workers", "1", "--work_dir", str(tmp_path / "w")])
