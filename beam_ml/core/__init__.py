"""The bottom layer: what every other layer shares. Record and chunk types, dead letters, errors, time parsing, file
helpers, the windowing algorithm and its types, the run context and run record, the counts sub-graph, and the
process-level fixes for local runners. Imports nothing else of beam_ml."""
