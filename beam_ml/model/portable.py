"""A pushed model's serving signatures with their lookup tables as constants: what converters for other runtimes
(TFLite, TF.js) can take.

tf.Transform's vocabularies are hash tables that a SavedModel fills from asset files when it loads; neither the
TFLite interpreter nor TF.js runs that file initializer (the tables stay empty: tensorflow/tensorflow#52206). Here
each signature's graph is imported again with its tables swapped for tables of the same contents built from
constant tensors (`KeyValueTensorInitializer`), which both runtimes initialise. Nothing else in the graph changes:
a lookup's default value and out-of-vocabulary hashing are ops of the graph, not of the table, so answers are the
same.

    write_portable_saved_model("serving/penguins/1796421956", "/tmp/portable", ["serving_raw"])
"""
from __future__ import annotations

from typing import Any, Sequence

# tf.Transform's tables map strings (or integers) to integer ids; other pairs are tried in turn.
_TABLE_DTYPES = (("string", "int64"), ("int64", "int64"), ("string", "string"), ("int64", "string"),
                 ("string", "float32"), ("int64", "float32"))


def _table_contents(handle: Any) -> tuple[Any, Any]:
    """(keys, values) of the hash table behind a resource handle."""
    import tensorflow as tf
    for key_dtype, value_dtype in _TABLE_DTYPES:
        try:
            return tf.raw_ops.LookupTableExportV2(table_handle=handle, Tkeys=tf.as_dtype(key_dtype),
                                                  Tvalues=tf.as_dtype(value_dtype))
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
            continue
    raise ValueError("a lookup table of the model has key and value types no converter takes")


def _constant_tables_function(function: Any, holder: Any) -> Any:
    """`function` (a loaded signature) traced again with every captured table replaced by a constant-initialised
    copy, kept on `holder` with the variables it reads (so that saving `holder` saves them)."""
    import tensorflow as tf
    holder.model_variables = list(function.variables)
    variable_handles = {v.handle.ref() for v in function.variables}
    replacements = {}
    for index, captured in enumerate(function.captured_inputs):
        if captured.dtype == tf.resource and captured.ref() not in variable_handles:
            keys, values = _table_contents(captured)
            replacements[index] = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(keys, values),
                                                            default_value=tf.zeros([], values.dtype))
    holder.tables = list(replacements.values())
    graph_def = function.graph.as_graph_def()
    arguments = function.inputs[:len(function.inputs) - len(function.captured_inputs)]
    inner_captures = function.graph.internal_captures
    output_names = [t.name for t in function.outputs]

    @tf.function(input_signature=[function.structured_input_signature[1]])
    def constant_tables(features):
        input_map = {t.name: features[t.name.split(":")[0]] for t in arguments}
        for index, (captured, inner) in enumerate(zip(function.captured_inputs, inner_captures)):
            # tf.identity brings the eager handle into this graph, which import_graph_def's input_map needs.
            input_map[inner.name] = tf.identity(replacements[index].resource_handle if index in replacements
                                                else captured)
        outputs = tf.graph_util.import_graph_def(graph_def, input_map=input_map, return_elements=output_names,
                                                 name="")
        return tf.nest.pack_sequence_as(function.structured_outputs, outputs)

    return constant_tables.get_concrete_function()


def write_portable_saved_model(model_dir: str, out_dir: str, signature_keys: Sequence[str]) -> list[str]:
    """Writes a SavedModel at `out_dir` with the signatures `signature_keys` of the model at `model_dir`, their
    tables constant (see the module docstring). Returns the signatures written; ValueError naming a missing one."""
    import tensorflow as tf
    loaded = tf.saved_model.load(model_dir)
    missing = [key for key in signature_keys if key not in loaded.signatures]
    if missing:
        raise ValueError(f"the model at {model_dir} has no signature {missing} (it has {sorted(loaded.signatures)})")
    portable = tf.Module()
    portable.signature_parts = []
    signatures = {}
    for key in signature_keys:
        holder = tf.Module()
        signatures[key] = _constant_tables_function(loaded.signatures[key], holder)
        portable.signature_parts.append(holder)
    tf.saved_model.save(portable, out_dir, signatures=signatures)
    return list(signatures)
