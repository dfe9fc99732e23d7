"""beam_ml: an ML pipeline (ingest → validate → transform → train → evaluate → push) as one Apache Beam graph."""
import sys

import setuptools

if sys.version_info[:2] not in ((3, 10), (3, 11)):
    sys.exit(f"beam_ml needs Python 3.10 or 3.11 (TFDV 1.16 has no wheels for {sys.version.split()[0]}).")

with open("requirements.txt") as f:
    REQUIREMENTS = [line.strip() for line in f if line.strip() and not line.startswith("#")]

setuptools.setup(
    name="beam-ml",
    version="0.1.0",
    description=__doc__,
    python_requires=">=3.10,<3.12",
    packages=setuptools.find_packages(include=["beam_ml", "beam_ml.*", "transforms", "transforms.*",
                                               "jobs", "jobs.*"]),
    install_requires=REQUIREMENTS,
    # The hash split's hot loop in C (OpenSSL's SHA-256, GIL released). Optional: without a compiler or OpenSSL's
    # headers the package installs without it and beam_ml.ingest.split computes the same values with hashlib.
    ext_modules=[setuptools.Extension("beam_ml.ingest._sha256mod", ["beam_ml/ingest/_sha256mod.c"],
                                      libraries=["crypto"], optional=True)],
)
