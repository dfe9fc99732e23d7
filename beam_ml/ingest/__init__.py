"""Where records come from: the `Source` interface (`source`), resolving a job's input options to one (`resolve`),
reading any source into splits with dead letters and counts (`read`: `ReadSplits`), how rows are split (`split`),
spans and versions of inputs (`spans`), and the sources: files (`files/`), SQL databases (`sql`), BigQuery
(`bigquery`), DVC-tracked files (`dvc`)."""
