"""Asks the lineage store.

    python -m beam_ml.lineage --store runs/penguins/metadata.sqlite model serving/penguins/1796419589
    python -m beam_ml.lineage --store runs/penguins/metadata.sqlite runs [--output_dir runs/penguins]

`model DIR...`: a list, what produced each model (its run, data files with fingerprints, module, config, metrics, the
baseline it was compared with and the runs behind it) and the prediction and detection runs that used it, with what
they wrote. `runs`: the recorded runs of every job, oldest first, with their metrics.
Prints JSON. A MySQL store (mysql://user@host:port/database) takes its password from $BEAM_ML_METADATA_PASSWORD
(or the variable named by --password_env).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beam_ml.lineage", description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--store", required=True, help="a SQLite file or mysql://user@host:port/database")
    parser.add_argument("--password_env", default="BEAM_ML_METADATA_PASSWORD")
    commands = parser.add_subparsers(dest="command", required=True)
    model = commands.add_parser("model", help="what produced a model, and the runs that used it")
    model.add_argument("model_dirs", nargs="+", metavar="DIR", help="a pushed version (or a run's model) directory")
    runs = commands.add_parser("runs", help="the recorded runs with their metrics")
    runs.add_argument("--output_dir", default=None, help="only the runs of this pipeline's output directory")
    args = parser.parse_args(argv)

    from beam_ml.core.errors import ConfigError
    from beam_ml.lineage.queries import model_lineage, run_history
    from beam_ml.lineage.store import open_store
    if "://" not in args.store and not os.path.exists(args.store):
        print(f"error: --store: {args.store} does not exist", file=sys.stderr)
        return 2
    try:
        store = open_store(args.store, os.environ.get(args.password_env))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.command == "runs":
        output_dir = os.path.abspath(args.output_dir) if args.output_dir and "://" not in args.output_dir \
            else args.output_dir
        print(json.dumps(run_history(store, output_dir), indent=2))
        return 0
    code, found = 0, []
    for model_dir in args.model_dirs:
        try:
            found.append(model_lineage(store, os.path.abspath(model_dir) if "://" not in model_dir else model_dir))
        except LookupError as e:
            print(f"error: {e}", file=sys.stderr)
            code = 1
    print(json.dumps(found, indent=2))
    return code


if __name__ == "__main__":
    sys.exit(main())
