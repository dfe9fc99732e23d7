"""The top layer: what a job entry point does (`run`), each job's options (`options`), their Flex Template metadata
(`templates`) and the commands that build and launch the templates (`flex`). Only entry points import it.
"""
