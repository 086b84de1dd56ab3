"""The one place that creates the Powertools logger and metrics.

No Powertools Tracer: the X-Ray SDK it loads (with botocore) added ~250 ms to every cold start
(`make bench`), while `Tracing: Active` in the template already traces API Gateway and each
invocation at no import cost.
"""

from aws_lambda_powertools import Logger, Metrics

from version import __version__

logger = Logger()
metrics = Metrics()
# Imported once per container, while Lambda starts it: which release runs, in the cold start's logs.
logger.info("cold start", extra={"version": __version__})
