import datetime

import pytest

from beam_ml.ingest.spans import has_placeholders, resolve_spans


def _tree(tmp_path, paths):
    for path in paths:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("a\n1\n")
    return str(tmp_path)


def test_default_is_the_latest_span_at_its_latest_version(tmp_path):
    root = _tree(tmp_path, [f"span-{s}/v{v}/data.csv" for s in (1, 2, 3) for v in (1, 2)] + ["span-3/v10/data.csv"])
    selection = resolve_spans(root + "/span-{SPAN}/v{VERSION}/*.csv")
    assert selection.spans == (3,) and selection.versions == (10,)
    assert selection.patterns == (root + "/span-3/v10/*.csv",)


def test_rolling_and_static_ranges_and_a_given_version(tmp_path):
    root = _tree(tmp_path, [f"span-{s:02d}/v{v}/data.csv" for s in (1, 2, 3) for v in (1, 2)])
    pattern = root + "/span-{SPAN:2}/v{VERSION}/*.csv"
    rolling = resolve_spans(pattern, "last:2")
    assert rolling.spans == (2, 3) and rolling.versions == (2, 2)
    assert rolling.patterns == (root + "/span-02/v2/*.csv", root + "/span-03/v2/*.csv")
    assert resolve_spans(pattern, "1-2", version=1).patterns == (root + "/span-01/v1/*.csv", root + "/span-02/v1/*.csv")
    with pytest.raises(ValueError, match=r"spans \[4\] of 2-4 have no files"):
        resolve_spans(pattern, "2-4")
    with pytest.raises(ValueError, match="no version 7"):
        resolve_spans(pattern, version=7)


def test_date_spans_count_days_since_the_epoch(tmp_path):
    root = _tree(tmp_path, ["2024/01/30/a.csv", "2024/02/01/a.csv", "2023/12/31/a.csv"])
    selection = resolve_spans(root + "/{YYYY}/{MM}/{DD}/*.csv", "last:2")
    assert selection.patterns == (root + "/2024/01/30/*.csv", root + "/2024/02/01/*.csv")
    assert selection.spans[-1] == (datetime.date(2024, 2, 1) - datetime.date(1970, 1, 1)).days


@pytest.mark.parametrize("pattern, message", [("d/{VERSION}/*.csv", "needs a span"),
                                              ("d/{YYYY}/{MM}/*.csv", "together"),
                                              ("d/{SPAN}/{YYYY}/{MM}/{DD}/*.csv", "not both")])
def test_bad_patterns_are_named(pattern, message):
    with pytest.raises(ValueError, match=message):
        resolve_spans(pattern)
    assert has_placeholders(pattern) and not has_placeholders("d/*.csv")


def test_bad_selection_is_named(tmp_path):
    with pytest.raises(ValueError, match="give latest, last:N or A-B"):
        resolve_spans(str(tmp_path) + "/{SPAN}/*.csv", "newest")


def test_the_training_plan_reads_the_selected_spans_and_records_them(tmp_path):
    from beam_ml.config.train import PipelineConfig
    from beam_ml.train.plan import plan_run
    from tests.support.paths import PENGUINS_CONFIG, PENGUINS_CSV

    rows = open(PENGUINS_CSV).read().splitlines()
    for span, version, part in [(1, 1, rows[1:100]), (2, 1, rows[100:200]), (2, 2, rows[100:250]),
                                (3, 1, rows[250:])]:
        path = tmp_path / "data" / f"span-{span}" / f"v{version}" / "part.csv"
        path.parent.mkdir(parents=True)
        path.write_text("\n".join([rows[0]] + part) + "\n")
    config = PipelineConfig.load(PENGUINS_CONFIG, {
        "input": str(tmp_path / "data" / "span-{SPAN}" / "v{VERSION}" / "*.csv"), "spans": "last:2",
        "output_dir": str(tmp_path / "runs"), "serving_dir": str(tmp_path / "serving")})
    plan = plan_run(config)
    assert [f.path for f in plan.source.files] == [str(tmp_path / "data" / "span-2" / "v2" / "part.csv"),
                                            str(tmp_path / "data" / "span-3" / "v1" / "part.csv")]
    recorded = plan.manifest().record("succeeded")["span_selection"]
    assert list(recorded["spans"]) == [2, 3] and list(recorded["versions"]) == [2, 1]
