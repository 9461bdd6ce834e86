"""POST /v1/images/generations."""
from aws_lambda_powertools.logging import correlation_paths

from common.images.generations import generate_images
from common.observability import logger, metrics, tracer
from common.web.apigw import serve
from common.web.sinks import sink_for
from common.wiring import container
from runtime import streaming


# Streamed (API Gateway response streaming through our runtime, src/runtime): answers of any size
# and length; invoked without a stream (tests, a buffered invocation) it answers buffered.
@streaming
# clear_state: keys appended while serving one caller (the token id) must not log the next one.
@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)  # responses carry image bytes: never into traces
@metrics.log_metrics
def handler(event: dict, context: object, response_stream: object = None) -> dict | None:
    return serve(event, context, generate_images, container(), sink_for(response_stream))
