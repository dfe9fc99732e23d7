"""Tools for trying and measuring the jobs, not part of the library: replaying telemetry to Pub/Sub
(`replay_telemetry`) and generating the bundled telemetry sample (`telemetry_generator`). Run from the repository
root: `python -m tools.<tool> --help`."""
