"""Each job's options: one frozen dataclass per job (`train`, `predict`, `detect`), loaded from YAML and overridden by
flags of the same names, with the input options they share (`source`) and the field machinery (`base`). A bad value
raises `ConfigError` naming the option, before any work."""
