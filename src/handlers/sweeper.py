"""Scheduled: return reservations of requests that died before settling."""
from common.billing.sweeper import sweep
from common.observability import logger, metrics, tracer
from common.wiring import container


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return sweep(container())
