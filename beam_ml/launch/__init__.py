"""The top layer: what a job entry point does (`run`), each job's options (`options`), their Flex Template metadata
(`templates`) and the commands that build and launch the templates (`flex`). Only entry points import it.

Google client libraries warn at import time about Python 3.11's end of support in 2027: not actionable by users, and
it buries a job's output; silenced here, before any of them is imported by a job.
"""
import warnings

warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
