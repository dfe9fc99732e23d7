"""Train: run the user's `run_fn(fn_args)` inside a DoFn, once the transform outputs exist.

Contract of the user module (in the spirit of TFX's Trainer): `run_fn(fn_args: FnArgs)` trains a model and exports
it to `fn_args.serving_model_dir`:
  * a tf_keras model (the default), exported by `beam_ml.model.export.export_serving_model`; `fn_args.make_dataset`
    is the tf.data factory over the transformed examples;
  * a scikit-learn or XGBoost model, when the module says so with `FRAMEWORK = "sklearn"` (or `"xgboost"`), exported
    by `beam_ml.model.estimators.export_sklearn` (`export_xgboost`); `fn_args.arrays(files)` gives the transformed
    examples as numpy arrays.
It may return its metrics ({name: value}, e.g. the last epoch's validation metrics): hyperparameter tuning
(`beam_ml.train.tuning`) takes its objective from them.
"""
from __future__ import annotations

import dataclasses
import random
from typing import Any, Optional, Sequence

import apache_beam as beam

from beam_ml.core.console import progress_line
from beam_ml.model.artifact import (FRAMEWORKS, MODEL_FILES, SKLEARN, TENSORFLOW, XGBOOST, model_framework,
                                    signature_problems, write_windowing)
from beam_ml.train import user_module

EXPORT_HINTS = {
    TENSORFLOW: "export it with beam_ml.model.export.export_serving_model(model, tf_transform_output, fn_args.label, "
                  "fn_args.serving_model_dir), which adds the signatures they need",
    SKLEARN: "export it with beam_ml.model.estimators.export_sklearn(model, fn_args)",
    XGBOOST: "export it with beam_ml.model.estimators.export_xgboost(model, fn_args)",
}


def module_framework(module: Any) -> str:
    """The framework a user module's `run_fn` trains: its `FRAMEWORK` (default "tensorflow"); ValueError for one
    that is not known."""
    framework = getattr(module, "FRAMEWORK", TENSORFLOW)
    if framework not in FRAMEWORKS:
        raise ValueError(f"FRAMEWORK = {framework!r} is not one of {', '.join(FRAMEWORKS)}")
    return framework


@dataclasses.dataclass(frozen=True)
class FnArgs:
    """What `run_fn` gets. Paths may be local or gs://."""

    train_files: tuple[str, ...]
    eval_files: tuple[str, ...]
    transform_output: str  # the directory holding transform_fn/ and transformed_metadata/
    schema_path: str  # TFDV schema.pbtxt of the raw data
    serving_model_dir: str  # where run_fn must export the SavedModel
    model_run_dir: str  # for logs (e.g. TensorBoard)
    label: str  # the transformed label's key (same name as the raw label column)
    hyperparameters: dict = dataclasses.field(default_factory=dict)
    seed: int = 42
    windowing: Optional[dict] = None  # examples are windows of a key's rows (`WindowSpec.to_dict()` fields)
    trial_number: Optional[int] = None  # a tuning trial's (`beam_ml.train.tuning`): run_fn returns its metrics
    # A tuning trial's early stopping: `report(epoch, metrics)` says whether to stop (`beam_ml.train.tuning.Pruning`)
    pruning: Optional[Any] = None

    def make_dataset(self, files: Sequence[str], batch_size: int, num_epochs: Optional[int] = None,
                     shuffle: bool = True, shuffle_buffer: int = 10_000) -> Any:
        """(features, label) batches from transformed TFRecord files, parsed with the transformed feature spec.

        `num_epochs=None` repeats forever (use `steps_per_epoch`); order is deterministic for a given seed.
        """
        import tensorflow as tf
        import tensorflow_transform as tft

        spec = tft.TFTransformOutput(self.transform_output).transformed_feature_spec()
        label = self.label

        def split_label(features):
            return features, features.pop(label)

        dataset = tf.data.TFRecordDataset(sorted(files), num_parallel_reads=tf.data.AUTOTUNE)
        if shuffle:
            dataset = dataset.shuffle(shuffle_buffer, seed=self.seed, reshuffle_each_iteration=True)
        return (dataset.repeat(num_epochs)
                .batch(batch_size)
                .map(lambda records: tf.io.parse_example(records, spec), num_parallel_calls=tf.data.AUTOTUNE)
                .map(split_label)
                .prefetch(tf.data.AUTOTUNE))


    def arrays(self, files: Sequence[str]) -> tuple[Any, Any]:
        """(x, y): the transformed examples of `files` as numpy arrays, for a scikit-learn or XGBoost model: `x` the
        features side by side (float32 [rows, columns], columns named by `feature_names`), `y` the transformed label
        (a class index for a vocabulary-encoded label)."""
        import tensorflow_transform as tft

        from beam_ml.model.estimators import feature_layout, feature_matrix, read_transformed
        output = tft.TFTransformOutput(self.transform_output)
        examples = read_transformed(files, output)
        return feature_matrix(examples, feature_layout(output, self.label)), examples[self.label].reshape(-1)

    @property
    def feature_names(self) -> list[str]:
        """The names of the columns of `arrays`' x (a feature `f` of width n > 1 gives `f[0]` … `f[n-1]`)."""
        import tensorflow_transform as tft

        from beam_ml.model.estimators import feature_layout, feature_names
        return feature_names(feature_layout(tft.TFTransformOutput(self.transform_output), self.label))

    def epoch_progress(self, lines: int = 5) -> Any:
        """A tf_keras callback that prints about `lines` progress lines (epoch, loss and metrics) in the job's
        console format: pass it to `fit(..., callbacks=[fn_args.epoch_progress()], verbose=0)`. In a tuning trial it
        prints nothing (the rounds are reported) and stops training when the trial is pruned."""
        import tf_keras
        pruning = self.pruning  # set in every tuning trial

        class EpochProgress(tf_keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
                if pruning is not None:
                    if pruning.report(epoch, logs or {}):
                        self.model.stop_training = True
                    return
                epochs = self.params.get("epochs") or 1
                if (epoch + 1) % max(1, -(-epochs // lines)) and epoch + 1 != epochs:
                    return
                values = ", ".join(f"{name} {_short(value)}" for name, value in (logs or {}).items())
                print(progress_line("train", f"epoch {epoch + 1}/{epochs}: {values}"), flush=True)

        return EpochProgress()


def _short(value: Any) -> str:
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):  # a metric that is not one number
        return str(value)[:40]


def set_seeds(seed: int) -> None:
    import numpy as np
    import tf_keras
    random.seed(seed)
    np.random.seed(seed)
    tf_keras.utils.set_random_seed(seed)


class RunTrainer(beam.DoFn):
    """Calls the module's `run_fn` once per input element; emits the exported model directory."""

    def __init__(self, module: user_module.UserModule, fn_args: FnArgs, framework: str = TENSORFLOW):
        self._module = module
        self._fn_args = fn_args
        self._framework = framework

    def process(self, _, train_files: list[str], eval_files: list[str], hyperparameters: Optional[dict] = None,
                **ready: Any):
        """`hyperparameters`, when given, replace fn_args' (the tuned ones); `ready` side inputs only order this
        step after its prerequisites (transform, validation)."""
        import tensorflow as tf

        fn_args = dataclasses.replace(self._fn_args, train_files=tuple(sorted(train_files)),
                                      eval_files=tuple(sorted(eval_files)),
                                      hyperparameters=self._fn_args.hyperparameters if hyperparameters is None
                                      else hyperparameters)
        if tf.io.gfile.exists(fn_args.serving_model_dir):  # a retried bundle starts clean
            tf.io.gfile.rmtree(fn_args.serving_model_dir)
        set_seeds(fn_args.seed)
        self._module.load().run_fn(fn_args)
        check_export(self._module.spec, self._framework, fn_args.serving_model_dir)
        if fn_args.windowing:  # how to cut windows goes with the model, for whoever serves it on a stream
            write_windowing(fn_args.serving_model_dir, fn_args.windowing)
        yield fn_args.serving_model_dir


def check_export(spec: str, framework: str, model_dir: str) -> None:
    """RuntimeError unless `run_fn` of module `spec` exported a `framework` model to `model_dir` that evaluation
    and serving can use (found now, not as a missing tensor deep inside TFMA)."""
    exported = model_framework(model_dir)
    hint = EXPORT_HINTS[framework]
    if exported != framework:
        found = f"a {exported} model" if exported else "nothing"
        raise RuntimeError(f"run_fn of {spec} (FRAMEWORK {framework!r}) exported {found} to {model_dir}, no "
                           f"{MODEL_FILES[framework]}; {hint}")
    problems = signature_problems(model_dir) if framework == TENSORFLOW else []
    if problems:
        raise RuntimeError(f"run_fn of {spec} exported a model that evaluation and serving cannot use: "
                           f"{'; '.join(problems)}; {hint}")


class TrainModel(beam.PTransform[beam.pvalue.PBegin, beam.PCollection[str]]):
    """Runs training on a worker once every input in `after` has been computed; outputs the model directory.

    Example::

        model_dir = p | TrainModel(UserModule("transforms.penguins"), fn_args, train_files=out["train"],
                                   eval_files=out["eval"], after={"transform": out["transform_fn"]})
    """

    def __init__(self, module: user_module.UserModule, fn_args: FnArgs, train_files: beam.PCollection,
                 eval_files: beam.PCollection, after: dict[str, beam.PCollection], min_ram: str = "4GB",
                 hyperparameters: Optional[beam.PCollection] = None, framework: str = TENSORFLOW):
        super().__init__()
        self._framework = framework
        self._hyperparameters = hyperparameters  # a singleton: the tuned hyperparameters, known only when run
        self._min_ram = min_ram
        self._module = module
        self._fn_args = fn_args
        self._train_files = train_files
        self._eval_files = eval_files
        self._after = after

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection[str]:
        return (pbegin
                | "Trigger" >> beam.Create([None])
                | "RunFn" >> beam.ParDo(RunTrainer(self._module, self._fn_args, self._framework),
                                        beam.pvalue.AsList(self._train_files), beam.pvalue.AsList(self._eval_files),
                                        **({} if self._hyperparameters is None else
                                           {"hyperparameters": beam.pvalue.AsSingleton(self._hyperparameters)}),
                                        **{k: beam.pvalue.AsList(v) for k, v in self._after.items()}
                                        ).with_resource_hints(min_ram=self._min_ram))
