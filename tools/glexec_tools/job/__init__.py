"""glexec-job's job side: the input-sandbox unpacker and the output collector that run as the
job's target account (``inner``), rules in ``plan``, effects in ``apply``."""
