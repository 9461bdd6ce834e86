"""GET /v1/dashboard/billing/subscription (and without /v1)."""
from aws_lambda_powertools.logging import correlation_paths

from common.billing.account import billing_subscription
from common.observability import logger, metrics, tracer
from common.web.apigw import serve
from common.wiring import container


# clear_state: keys appended while serving one caller (the token id) must not log the next one.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return serve(event, context, billing_subscription, container())
