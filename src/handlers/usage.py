"""GET /v1/usage."""
from aws_lambda_powertools.logging import correlation_paths

from common.apigw import serve
from common.billing import usage
from common.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return serve(event, context, usage)
