"""POST /v1/images/edits (JSON image references or multipart uploads)."""
from aws_lambda_powertools.logging import correlation_paths

from common.apigw import serve
from common.edits import edit_images
from common.observability import logger, metrics, tracer


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False)  # responses carry image bytes: never into traces
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return serve(event, context, edit_images)
