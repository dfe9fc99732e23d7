"""The report benchmark's wide run: real TFDV statistics of 200 features, all shown, each with its chart."""
import re

from beam_ml.report.page import gather, render
from benchmarks.report_page import wide_run


def test_a_report_of_200_features_shows_every_feature_against_the_previous_run(tmp_path):
    facts = gather(wide_run(str(tmp_path), features=200, rows=300))
    assert len(facts.features) == 200 and facts.previous_run.endswith("previous")
    page = render(facts)
    data = page[page.index('<section id="data"'):page.index('<section id="validation"')]
    assert len(re.findall(r"<tr><td><b>", data)) == 200
    assert data.count("<svg") == 200 and "previous run&#x27;s train" in data
