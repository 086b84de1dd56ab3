"""The one place that creates the Powertools logger and metrics.

No Powertools Tracer: the X-Ray SDK it loads (with botocore) added ~250 ms to every cold start
(`make bench`), while `Tracing: Active` in the template already traces API Gateway and each
invocation at no import cost.
"""

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()
