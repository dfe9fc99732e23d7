"""The two questions the lineage store answers (documented in the README, and asked by `python -m beam_ml.lineage`):
what produced a model (and which prediction and detection runs used it), and the runs of a pipeline with their
metrics."""
from __future__ import annotations

import json
from typing import Any, Optional

from beam_ml.lineage.store import DATA, DETECT, PIPELINE_CONTEXT, PREDICT, RUN_CONTEXT


def _value(prop: Any) -> Any:
    kind = prop.WhichOneof("value")
    value = getattr(prop, kind) if kind else None
    if kind == "string_value" and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _properties(node: Any) -> dict[str, Any]:
    return {key: _value(prop) for key, prop in sorted(node.custom_properties.items())}


def _run_of(store: Any, execution_id: int) -> Optional[Any]:
    run_type = store.get_context_type(RUN_CONTEXT).id
    return next((c for c in store.get_contexts_by_execution(execution_id) if c.type_id == run_type), None)


def _producers(store: Any, artifact_ids: list[int], seen: set[int]) -> list[int]:
    """The executions that output these artifacts, not yet `seen`; a run that reused them (a CACHED execution) did
    not produce them and is left out."""
    from ml_metadata.proto import metadata_store_pb2 as pb
    ids = sorted({e.execution_id for e in store.get_events_by_artifact_ids(artifact_ids)
                  if e.type == pb.Event.OUTPUT and e.execution_id not in seen})
    return [e.id for e in store.get_executions_by_id(ids) if e.last_known_state != pb.Execution.CACHED]


def _consumers(store: Any, artifact_ids: list[int]) -> list[dict[str, Any]]:
    """The prediction and detection runs that read these artifacts (a model), oldest first: run directory, id,
    job, status, times, and the artifacts each wrote (type, uri and properties)."""
    from ml_metadata.proto import metadata_store_pb2 as pb
    uses = {t.id for t in store.get_execution_types() if t.name in (PREDICT.execution_type, DETECT.execution_type)}
    ids = sorted({e.execution_id for e in store.get_events_by_artifact_ids(artifact_ids) if e.type == pb.Event.INPUT})
    types = {t.id: t.name for t in store.get_artifact_types()}
    consumers = []
    for execution in [e for e in store.get_executions_by_id(ids) if e.type_id in uses]:
        run = _run_of(store, execution.id)  # every execution this package records is in its run's context
        written = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                   if e.type == pb.Event.OUTPUT]
        properties = _properties(run)
        consumers.append({"run_dir": run.name, **{k: properties.get(k) for k in (
            "run_id", "job", "status", "started", "finished")},
            "outputs": [{"type": types[a.type_id], "uri": a.uri, **_properties(a)}
                        for a in store.get_artifacts_by_id(written)]})
    return sorted(consumers, key=lambda c: c.get("started") or "")


def model_lineage(store: Any, model_uri: str) -> dict[str, Any]:
    """What produced the model at `model_uri` (a pushed version directory or a run's model directory): the run
    (its record's fields: id, status, module, config, metrics), the data files it read (path, sha256, size), the
    baseline model it was compared with, and the earlier runs behind that baseline, found by walking the store's
    events back from the model; and the prediction and detection runs that used it (`consumers`). LookupError if
    the store has no such model."""
    from ml_metadata.proto import metadata_store_pb2 as pb
    uri = model_uri.rstrip("/")
    start = [a for a in store.get_artifacts_by_uri(uri) + store.get_artifacts_by_uri(uri + "/")]
    if not start:
        raise LookupError(f"no model at {model_uri} in the lineage store")
    producers = _producers(store, [a.id for a in start], set())
    if not producers:
        raise LookupError(f"{model_uri} is in the lineage store, but no recorded run produced it")
    run = _run_of(store, producers[0])
    # Everything upstream: artifact ← execution that output it ← its inputs ← ..., over every run on the way.
    seen_artifacts = {a.id for a in start}
    seen_executions: set[int] = set()
    frontier = list(producers)
    while frontier:
        seen_executions.update(frontier)
        inputs = [e.artifact_id for e in store.get_events_by_execution_ids(frontier)
                  if e.type == pb.Event.INPUT and e.artifact_id not in seen_artifacts]
        seen_artifacts.update(inputs)
        frontier = _producers(store, inputs, seen_executions) if inputs else []
    run_artifacts = {a.id for a in store.get_artifacts_by_context(run.id)} if run else set()
    artifacts = store.get_artifacts_by_id(sorted(seen_artifacts))
    types = {t.id: t.name for t in store.get_artifact_types()}
    runs = {c.name for e in seen_executions for c in [_run_of(store, e)] if c is not None}
    return {
        "model": model_uri,
        "run": {"run_dir": run.name, **_properties(run)} if run else None,
        "data": [{"uri": a.uri, **_properties(a)} for a in artifacts
                 if types[a.type_id] == DATA and a.id in run_artifacts],
        "baseline": [a.uri for a in artifacts if types[a.type_id] == "PushedModel" and a.id in run_artifacts
                     and a.uri.rstrip("/") != uri],
        "earlier_runs": sorted(runs - ({run.name} if run else set())),
        "consumers": _consumers(store, [a.id for a in start]),
    }


# What `run_history` gives of each run (besides its directory and the fingerprints of its data).
RUN_FIELDS = ("run_id", "job", "status", "started", "finished", "error", "metrics", "blessed", "pushed_model_dir",
              "counts", "span_selection", "cached_from", "reused_stages")


def run_history(store: Any, output_dir: Optional[str] = None) -> list[dict[str, Any]]:
    """The recorded runs (of the pipeline writing to `output_dir`, or all), oldest first: run directory, id, job,
    status, times, error, metrics, blessed, pushed model, counts, spans, what it reused, and the fingerprints of the
    data they read."""
    if output_dir is None:
        contexts = store.get_contexts_by_type(RUN_CONTEXT)
    else:
        pipeline = store.get_context_by_type_and_name(PIPELINE_CONTEXT, output_dir.rstrip("/"))
        contexts = store.get_children_contexts_by_context(pipeline.id) if pipeline else []
    runs = []
    data_type = store.get_artifact_type(DATA).id if contexts else None
    for context in contexts:
        properties = _properties(context)
        data = [a for a in store.get_artifacts_by_context(context.id) if a.type_id == data_type]
        runs.append({"run_dir": context.name, **{k: properties.get(k) for k in RUN_FIELDS},
                     "data_sha256": sorted(_value(a.custom_properties["sha256"]) for a in data
                                           if "sha256" in a.custom_properties)})
    return sorted(runs, key=lambda r: r.get("started") or "")
