"""GET /v1/pricing."""
from aws_lambda_powertools.logging import correlation_paths

from common.apigw import serve
from common.price_list import price_list
from common.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return serve(event, context, price_list)
