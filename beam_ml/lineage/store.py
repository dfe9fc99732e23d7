"""Lineage in ML Metadata (the store TFX and Vertex ML Metadata use): every finished run of the training, batch
prediction and streaming detection jobs, its steps as executions, what they read and wrote as artifacts, and the
events that link them.

The store is SQLite by default (`<output_dir>/metadata.sqlite`) or MySQL/MariaDB (`metadata_store:
mysql://user@host:port/database`, the password in the environment variable named by `metadata_password_env`); a run
that uses a model is recorded by default in the store of the training run that produced it (`resolve_store`).
A run is recorded once, when it has ended (succeeded, failed or cancelled), from its run record and the artifacts
on disk:

    context  beam_ml.Pipeline (the output directory) ── beam_ml.Run (the run directory, with its record's fields)
    train_pipeline    Validate   data files ──▶ ExampleStatistics, Schema, ExampleAnomalies
                      Transform  data files, Schema ──▶ TransformGraph
                      Tune       TransformGraph, Schema ──▶ HyperParameters (a run with `tuning`: the study, the
                                 best trial and its values)
                      Train      TransformGraph, Schema, HyperParameters ──▶ Model
                      Evaluate   Model, data files, the baseline PushedModel ──▶ ModelEvaluation
                      Push       Model, ModelEvaluation ──▶ PushedModel
    batch_predict     Predict    data files, the PushedModel (or Model) ──▶ beam_ml.Predictions, beam_ml.DeadLetters
    detect_anomalies  Detect     the PushedModel at launch, if a model scores ──▶ beam_ml.Alerts, beam_ml.DeadLetters

A data file with the same path and sha256 as in an earlier run is the same artifact, and a pushed model (the
baseline of a training run, the model of a prediction or detection run) is the artifact the training run that
pushed it output, so the graph joins runs. Values are custom properties, so the types fit a store that TFX shares.
The step that failed is a FAILED execution (CANCELED when the run was stopped) carrying the error, with what it
wrote before failing (a training run stopped by anomalies has its statistics, schema and anomalies). A training
run that reused an earlier one (`cached_from`) has CACHED executions whose outputs are the earlier run's
artifacts; so does each stage a training run took over from an earlier run (`reused_stages`: validate, transform,
train).

A run is written in one transaction (`put_lineage_subgraph`): a writer that dies midway leaves nothing, and the next
`record_run_dir` records the run whole. A new artifact carries an external id (a hash of its type, uri and, for a
data file, its sha256), so two writers storing it at the same moment (MySQL writers do not take turns) share one; a
data input without a fingerprint (a table, a query) gets none: it is a new artifact in every run. The link from a
run to its pipeline is written just after; a run found without it gets it when it is recorded again.
"""
from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from typing import Any, Callable, NamedTuple, Optional

from beam_ml.core import fileutil
from beam_ml.core.errors import ConfigError
from beam_ml.core.layout import RunLayout

STORE_FILE = "metadata.sqlite"
PIPELINE_CONTEXT = "beam_ml.Pipeline"
RUN_CONTEXT = "beam_ml.Run"
DATA = "beam_ml.Data"


class Step(NamedTuple):
    """One execution of a run (type `beam_ml.<name>`): the run record's stage that says it completed, and the roles
    of the artifacts it reads and writes."""

    name: str
    done: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def execution_type(self) -> str:
        return f"beam_ml.{self.name}"


TUNE = Step("Tune", "tuned", ("transform_graph", "schema"), ("hyperparameters",))  # a run with `tuning` only
STAGES = (Step("Validate", "data checked", ("data",), ("statistics", "schema", "anomalies")),
          Step("Transform", "trained", ("data", "schema"), ("transform_graph",)),
          TUNE,
          Step("Train", "trained", ("transform_graph", "schema", "hyperparameters"), ("model",)),
          Step("Evaluate", "evaluated", ("model", "data", "baseline"), ("evaluation",)),
          Step("Push", "succeeded", ("model", "evaluation"), ("pushed",)))
STAGE_NAMES = tuple(step.name.lower() for step in STAGES)  # as the run record names them (`reused_stages`)
# The runs that use a model: it is an input ("pushed", or "model" for a model that was not pushed).
PREDICT = Step("Predict", "succeeded", ("data", "pushed", "model"), ("predictions", "dead_letter"))
DETECT = Step("Detect", "succeeded", ("pushed", "model"), ("alerts", "dead_letter"))
ARTIFACT_TYPES = {"data": DATA, "statistics": "ExampleStatistics", "schema": "Schema",
                  "anomalies": "ExampleAnomalies", "transform_graph": "TransformGraph",
                  "hyperparameters": "HyperParameters", "model": "Model",
                  "evaluation": "ModelEvaluation", "pushed": "PushedModel", "baseline": "PushedModel",
                  "predictions": "beam_ml.Predictions", "alerts": "beam_ml.Alerts",
                  "dead_letter": "beam_ml.DeadLetters"}


def default_store(output_dir: str) -> Optional[str]:
    """`<output_dir>/metadata.sqlite` for a local output directory; None on a remote one (SQLite needs a local
    file: give a MySQL store instead)."""
    return None if "://" in output_dir else os.path.join(output_dir, STORE_FILE)


def connection_config(store: str, password: Optional[str] = None) -> Any:
    """MLMD's ConnectionConfig for a SQLite file path or `mysql://user@host:port/database`. ConfigError naming
    --metadata_store for what MLMD's C++ would abort the process on (an empty database or host)."""
    from ml_metadata.proto import metadata_store_pb2
    config = metadata_store_pb2.ConnectionConfig()
    if store.startswith("mysql://"):
        url = urllib.parse.urlsplit(store)
        database = url.path.lstrip("/")
        try:
            port = url.port or 3306
        except ValueError:  # a port that is not a number
            port = None
        if not url.hostname or not database or "/" in database or not url.username or port is None:
            raise ConfigError("metadata_store", f"{store}: give mysql://user@host[:port]/database")
        config.mysql.host = url.hostname
        config.mysql.port = port
        config.mysql.database = database
        config.mysql.user = urllib.parse.unquote(url.username)
        if password:
            config.mysql.password = password
        return config
    if "://" in store:
        raise ConfigError("metadata_store", f"{store}: a local SQLite file or mysql://user@host:port/database")
    config.sqlite.filename_uri = store
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config


def open_store(store: str, password: Optional[str] = None) -> Any:
    from ml_metadata.metadata_store import metadata_store
    config = connection_config(store, password)
    if config.HasField("sqlite"):
        os.makedirs(os.path.dirname(os.path.abspath(store)), exist_ok=True)
    return metadata_store.MetadataStore(config)


def _type_id(store: Any, kind: str, name: str) -> int:
    from ml_metadata.proto import metadata_store_pb2
    proto = {"artifact": metadata_store_pb2.ArtifactType, "execution": metadata_store_pb2.ExecutionType,
             "context": metadata_store_pb2.ContextType}[kind](name=name)
    put = getattr(store, f"put_{kind}_type")
    return put(proto, can_add_fields=True, can_omit_fields=True)


def _set(message: Any, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if value is None:
            continue
        target = message.custom_properties[key]
        if isinstance(value, bool):
            target.bool_value = value
        elif isinstance(value, int):
            target.int_value = value
        elif isinstance(value, float):
            target.double_value = value
        elif isinstance(value, str):
            target.string_value = value
        else:
            target.string_value = json.dumps(value, sort_keys=True, default=str)


def _on_disk(candidates: dict[str, tuple[Optional[str], dict]]) -> dict[str, list[dict]]:
    """{role: [{uri, properties}]} of the candidates {role: (uri, properties)} whose uri exists."""
    import tensorflow as tf
    return {role: [{"uri": uri, **properties}] for role, (uri, properties) in candidates.items()
            if uri and tf.io.gfile.exists(uri)}


def _version(version_dir: str) -> dict:
    return {"uri": version_dir, "version": os.path.basename(version_dir.rstrip("/"))}


def _train_artifacts(record: dict) -> dict[str, list[dict]]:
    run_dir = record.get("cached_from") or record["run_dir"]  # a reused run's are the earlier run's
    reused = record.get("reused_stages") or {}  # and a reused stage's those of the run that computed them

    def layout(stage: str) -> RunLayout:
        return RunLayout(reused.get(stage) or run_dir)

    splits = list((record.get("counts") or {}).get("splits") or {})
    found = _on_disk({"statistics": (layout("validate").statistics, {"splits": splits}),
                      "schema": (layout("validate").schema_file, {}),
                      "anomalies": (layout("validate").anomalies, {"count": len(record.get("anomalies") or [])}),
                      "transform_graph": (os.path.join(layout("transform").transform, "transform_fn"), {}),
                      "hyperparameters": (RunLayout(run_dir).hyperparameters_file, _tuned(record.get("tuning"))),
                      "model": (layout("train").serving_model, {}),
                      "evaluation": (layout("evaluate").evaluation, {"blessed": record.get("blessed"),
                                                                     "metrics": record.get("metrics") or {}})})
    for role, field in (("pushed", "pushed_model_dir"), ("baseline", "baseline_model")):
        if record.get(field):
            found[role] = [_version(record[field])]
    return found


def _tuned(tuning: Optional[dict]) -> dict:
    """The tuned hyperparameters' properties: the study, its size and the trial they come from."""
    if not tuning:
        return {}
    best = tuning["best"]
    return {"study": tuning["study"], "objective": tuning["objective"], "trials": len(tuning["trials"]),
            "new_trials": tuning["new_trials"], "best_trial": best["number"], "best_value": best["value"],
            "params": best["params"]}


def _used_model(record: dict, field: str) -> dict[str, list[dict]]:
    """The model a run used, its record's `field`: a pushed version (the record says what it was pushed from,
    `pushed_from`) is the PushedModel its training run's Push output; any other model directory is a Model (the
    training run's own, when it is a run's model directory)."""
    model_dir = record.get(field)
    if not model_dir:
        return {}
    return {"pushed": [_version(model_dir)]} if record.get("pushed_from") else {"model": [{"uri": model_dir}]}


def _predict_artifacts(record: dict) -> dict[str, list[dict]]:
    counts = record.get("counts") or {}
    predictions = os.path.dirname(record["predictions"]) if record.get("predictions") else None
    return {**_used_model(record, "model_dir"), **_on_disk({
        "predictions": (predictions, {"count": counts.get("predicted")}),
        "dead_letter": (os.path.dirname(RunLayout(record["run_dir"]).dead_letter_file),
                        {"count": counts.get("dead_letter")})})}


def _detect_artifacts(record: dict) -> dict[str, list[dict]]:
    config = record.get("config") or {}
    return {**_used_model(record, "model_dir_at_launch"),
            **_on_disk({"alerts": (config.get("alerts_dir"), {}), "dead_letter": (config.get("dead_letter_dir"), {})})}


class JobLineage(NamedTuple):
    """How the runs of a job are recorded: its steps, and `artifacts(record)`, the artifacts a run left by role
    besides the data files it read (those on disk or named in its record)."""

    steps: tuple[Step, ...]
    artifacts: Callable[[dict], dict[str, list[dict]]]


JOBS = {"train_pipeline": JobLineage(STAGES, _train_artifacts),
        "batch_predict": JobLineage((PREDICT,), _predict_artifacts),
        "detect_anomalies": JobLineage((DETECT,), _detect_artifacts)}


def _artifacts(record: dict) -> dict[str, list[dict]]:
    """{role: [{uri, properties}]} of the artifacts the run left (only those that exist on disk or in the
    record)."""
    data = [{"uri": i.get("path") or i.get("table") or i.get("query") or i.get("bigquery") or "",
             "sha256": i.get("sha256"),
             "size": i.get("size"), "kind": i.get("kind"), "span": i.get("span"), "version": i.get("version")}
            for i in record.get("inputs") or []]
    return {"data": data, **JOBS[record["job"]].artifacts(record)}


def _identity(type_name: str, item: dict) -> Optional[str]:
    """An artifact's external id: a hash of its type, uri and (a data file) content fingerprint, short enough for
    MLMD's column; None for what has no identity of its own (a data input without a fingerprint: a table, a
    query, whose content changes under the same name)."""
    if not item.get("uri") or ("sha256" in item and not item.get("sha256")):
        return None
    return f"{type_name}:" + hashlib.sha256(f"{item['uri']}@{item.get('sha256') or ''}".encode()).hexdigest()


def _existing(store: Any, type_id: int, item: dict) -> Optional[Any]:
    """The stored artifact this one is: of the same type at the same uri (a data file: with the same sha256 too).
    A run's outputs are at paths of their own, so only a data file read again, a model used again (a baseline, the
    model of a prediction or detection), the outputs a reused run took over and a detection's alert and dead-letter
    directories written again are found."""
    for artifact in store.get_artifacts_by_uri(item["uri"]):
        if artifact.type_id != type_id:
            continue
        sha = artifact.custom_properties.get("sha256")
        if "sha256" not in item or (sha is not None and sha.string_value == (item.get("sha256") or "")):
            return artifact
    return None


def _context_id(store: Any, type_id: int, type_name: str, name: str) -> int:
    """The id of the context `name`, created if it is not there (another writer creating it at the same moment
    wins, and its context is used)."""
    from ml_metadata import errors
    from ml_metadata.proto import metadata_store_pb2 as pb
    found = store.get_context_by_type_and_name(type_name, name)
    if found is not None:
        return found.id
    try:
        return store.put_contexts([pb.Context(type_id=type_id, name=name)])[0]
    except errors.AlreadyExistsError:
        return store.get_context_by_type_and_name(type_name, name).id


def record_run(store: Any, record: dict) -> Optional[int]:
    """Records a run that has ended (its run record `record`) with its steps, artifacts and events; returns the
    run's context id, or None for a run still going (or of a job not in `JOBS`). Recording the same run again
    changes nothing."""
    from ml_metadata.proto import metadata_store_pb2 as pb
    if record.get("status") not in ("succeeded", "failed", "cancelled") or record.get("job") not in JOBS:
        return None
    steps = tuple(step for step in JOBS[record["job"]].steps if step != TUNE or record.get("tuning"))
    run_dir = record["run_dir"]
    existing = store.get_context_by_type_and_name(RUN_CONTEXT, run_dir)
    if existing is not None:
        _link_to_pipeline(store, existing.id, run_dir)  # a writer that died after the run's transaction
        return existing.id
    pipeline_type, run_type = _type_id(store, "context", PIPELINE_CONTEXT), _type_id(store, "context", RUN_CONTEXT)
    output_dir = os.path.dirname(run_dir.rstrip("/"))
    pipeline = pb.Context(id=_context_id(store, pipeline_type, PIPELINE_CONTEXT, output_dir), type_id=pipeline_type,
                          name=output_dir)
    run = pb.Context(type_id=run_type, name=run_dir)
    config = record.get("config") or {}
    _set(run, {"run_id": record.get("run_id"), "job": record.get("job"), "status": record.get("status"),
               "started": record.get("started"), "finished": record.get("finished"), "error": record.get("error"),
               "output_dir": output_dir, "module": config.get("module"), "config": config,
               "metrics": record.get("metrics") or {}, "blessed": record.get("blessed"),
               "pushed_model_dir": record.get("pushed_model_dir"), "counts": record.get("counts") or {},
               "span_selection": record.get("span_selection"), "cached_from": record.get("cached_from"),
               "reused_stages": record.get("reused_stages") or None})

    artifacts: list[Any] = []
    stored: dict[str, list[int]] = {}  # role: indexes into `artifacts`
    for role, items in _artifacts(record).items():
        type_name = ARTIFACT_TYPES[role]
        type_id = _type_id(store, "artifact", type_name)
        for item in items:
            artifact = _existing(store, type_id, item)
            if artifact is None:
                artifact = pb.Artifact(type_id=type_id, uri=item["uri"], state=pb.Artifact.LIVE)
                identity = _identity(type_name, item)
                if identity:  # a writer storing the same artifact at the same moment reuses this one
                    artifact.external_id = identity
                _set(artifact, {k: v for k, v in item.items() if k != "uri"})
            stored.setdefault(role, []).append(len(artifacts))
            artifacts.append(artifact)

    reached = {stage["stage"] for stage in record.get("stages") or []}
    if record.get("cached_from") or record.get("status") == "succeeded":  # every stage done (or reused), even in
        reached |= {step.done for step in steps}  # a record older than its `stages` list
    done_state = pb.Execution.CACHED if record.get("cached_from") else pb.Execution.COMPLETE

    def completed(step: Step) -> bool:  # the transform has no stage of its own: its graph shows it
        return step.done in reached or (step.name == "Transform" and "transform_graph" in stored)

    failed_at = None if record.get("status") == "succeeded" else next(
        (step for step in steps if not completed(step)), None)
    executions: list[Any] = []
    edges: list[tuple[int, int, Any]] = []
    for step in steps:
        failed = step == failed_at
        if not completed(step) and not failed:
            continue
        if step.name == "Push" and "pushed" not in stored and not failed:
            continue  # not blessed (or reused): nothing was pushed
        stopped = pb.Execution.CANCELED if record.get("status") == "cancelled" else pb.Execution.FAILED
        state = stopped if failed else (
            pb.Execution.CACHED if step.name.lower() in (record.get("reused_stages") or {}) else done_state)
        execution = pb.Execution(type_id=_type_id(store, "execution", step.execution_type), last_known_state=state)
        _set(execution, {"run_id": record.get("run_id"), "error": record.get("error") if failed else None})
        for roles, kind in ((step.inputs, pb.Event.INPUT), (step.outputs, pb.Event.OUTPUT)):  # a failed step's
            edges += [(len(executions), index, pb.Event(type=kind))  # outputs too: what it wrote before failing
                      for role in roles for index in stored.get(role, [])]
        executions.append(execution)
        if failed:
            break
    from ml_metadata import errors
    try:  # all of the run or none of it, in one transaction
        _, _, [_, run_id] = store.put_lineage_subgraph(executions, artifacts, [pipeline, run], edges,
                                                       reuse_artifact_if_already_exist_by_external_id=True)
    except errors.AlreadyExistsError:  # recorded by another writer at the same moment
        found = store.get_context_by_type_and_name(RUN_CONTEXT, run_dir)
        if found is None:
            raise
        return found.id
    _link_to_pipeline(store, run_id, run_dir)
    return run_id


def _link_to_pipeline(store: Any, run_id: int, run_dir: str) -> None:
    """Makes the run's context a child of its pipeline's (the output directory's), if it is not yet."""
    from ml_metadata import errors
    from ml_metadata.proto import metadata_store_pb2 as pb
    if store.get_parent_contexts_by_context(run_id):
        return
    pipeline_type = _type_id(store, "context", PIPELINE_CONTEXT)
    pipeline_id = _context_id(store, pipeline_type, PIPELINE_CONTEXT, os.path.dirname(run_dir.rstrip("/")))
    try:
        store.put_parent_contexts([pb.ParentContext(child_id=run_id, parent_id=pipeline_id)])
    except errors.AlreadyExistsError:  # linked by another writer at the same moment
        pass


def store_of(config: dict, output_dir: str) -> Optional[str]:
    """The lineage store a run's config names (`metadata_store`), the default one beside `output_dir`, or None
    (`metadata_store: none`, or a remote output directory without a MySQL store)."""
    given = config.get("metadata_store")
    if given == "none":
        return None
    return given or default_store(output_dir)


def resolve_store(given: Optional[str], password_env: str, output_dir: str, model_dir: Optional[str]) -> str:
    """The store of a run that uses the model trained in `model_dir` (a training run's model directory; None without
    a model), checked at launch (ConfigError naming --metadata_store): `given` (--metadata_store), else that
    training run's store, so that the run joins the model's lineage, else the default one beside `output_dir`
    (checked with it); 'none' when there is none. The run's config records it."""
    if given == "none":
        return given
    store = fileutil.absolute(given) if given else _training_store(model_dir)
    if store is None:
        return default_store(output_dir) or "none"
    check_store(store, password_env)
    return store


def _training_store(model_dir: Optional[str]) -> Optional[str]:
    """The store of the training run whose model directory (`<run_dir>/model/serving`) is `model_dir`; None when it
    is not one, or that run had no store."""
    import tensorflow as tf
    in_run = "/" + RunLayout("").serving_model  # /model/serving
    model_dir = (model_dir or "").rstrip("/")
    if not model_dir.endswith(in_run):
        return None
    layout = RunLayout(model_dir[:-len(in_run)])
    if not tf.io.gfile.exists(layout.manifest):
        return None
    config = json.loads(fileutil.read_text(layout.manifest)).get("config") or {}
    return store_of(config, os.path.dirname(layout.run_dir))


def run_store(run_dir: str, record: Optional[dict] = None) -> Optional[tuple[str, Optional[str]]]:
    """The lineage store the run in `run_dir` (its run record `record`, read if not given) is recorded in: its URI
    and password (from the environment variable its config names), or None when it has none."""
    if record is None:
        record = json.loads(fileutil.read_text(RunLayout(run_dir).manifest))
    config = record.get("config") or {}
    uri = store_of(config, os.path.dirname(run_dir.rstrip("/")))
    return (uri, os.environ.get(config.get("metadata_password_env") or "")) if uri else None


def store_turn(store_uri: str, owner: str) -> Any:
    """A context in which to write to the store: SQLite writers take turns under a lock file beside it (MySQL
    serializes its own transactions)."""
    import contextlib

    from beam_ml.core.lock import PathLock
    return (contextlib.nullcontext() if store_uri.startswith("mysql://")
            else PathLock(store_uri + ".lock", owner=owner, ttl_seconds=600, wait_seconds=300))


def record_run_dir(run_dir: str) -> Optional[int]:
    """Records the ended run in `run_dir` in the lineage store its config names; returns the run's context id, or
    None when there is no store or the run is not a finished run of a job in `JOBS`."""
    run_dir = run_dir.rstrip("/")
    if "://" not in run_dir:
        run_dir = os.path.abspath(run_dir)  # the name the job recorded it under, however the caller spells it
    record = json.loads(fileutil.read_text(RunLayout(run_dir).manifest))
    store = run_store(run_dir, record)
    if record.get("job") not in JOBS or not store:
        return None
    with store_turn(store[0], run_dir):
        return record_run(open_store(*store), {**record, "run_dir": run_dir})


def check_store(store_uri: Optional[str], password_env: str) -> None:
    """Fails at launch (ConfigError naming --metadata_store) on a store the run could not record itself in: a bad
    URI, a SQLite file in a directory that cannot be written, a MySQL server that refuses the connection."""
    if store_uri is None:
        return
    if store_uri.startswith("mysql://"):
        try:
            open_store(store_uri, os.environ.get(password_env))
        except ConfigError:
            raise
        except Exception as e:  # refused, unknown database user, wrong password (from ${password_env})
            raise ConfigError("metadata_store", f"cannot open {store_uri} (password from ${password_env}): "
                                                f"{type(e).__name__}: {e}") from None
        return
    connection_config(store_uri)  # raises on a remote URI
    problem = fileutil.unwritable_reason(os.path.dirname(os.path.abspath(store_uri)))
    if problem:
        raise ConfigError("metadata_store", f"cannot write {store_uri}: {problem}")
