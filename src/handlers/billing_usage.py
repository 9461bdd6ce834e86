"""GET /v1/dashboard/billing/usage (and /dashboard/billing/usage, where ChatGPT-Next-Web asks)."""
from aws_lambda_powertools.logging import correlation_paths

from common.apigw import serve
from common.billing import billing_usage
from common.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return serve(event, context, billing_usage)
