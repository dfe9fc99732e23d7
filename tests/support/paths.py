"""Where the repository, the bundled examples and the shared datasets are."""
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
PENGUINS_CSV = os.path.join(ROOT, "examples", "penguins", "data", "penguins.csv")
PENGUINS_CONFIG = os.path.join(ROOT, "examples", "penguins", "config.yaml")
TAXI_CONFIG = os.path.join(ROOT, "examples", "taxi", "config.yaml")
TAXI_CSV = os.path.join(ROOT, "examples", "taxi", "data", "taxi.csv")
TELEMETRY_CONFIG = os.path.join(ROOT, "examples", "telemetry", "config.yaml")
