"""GET /v1/openapi.json: the API's own OpenAPI document (no token needed)."""
from aws_lambda_powertools.logging import correlation_paths

from common.observability import logger, metrics, tracer
from common.web.apigw import serve
from common.web.openapi import serve_openapi


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return serve(event, context, serve_openapi, None)
