"""File inputs: the file source and one parser per format (CSV, JSON Lines, Parquet, TFRecord, images)."""
