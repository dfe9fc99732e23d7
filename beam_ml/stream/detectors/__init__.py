"""Online anomaly detectors, one algorithm per file: the interface (`base`), beam_ml's context detector
(`context`), Beam's univariate detectors per channel (`univariate`), and the catalog the job's `--detector` option
names (`catalog`). Detectors hold plain picklable state and no Beam; `beam_ml.stream.online_scoring` keeps one per
sensor in Beam state."""
