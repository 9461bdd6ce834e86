"""Scheduled: return reservations of requests that died before settling."""
from aws_lambda_powertools.metrics import MetricUnit

from common.observability import logger, metrics, tracer
from common.sweeper import release_stale_holds


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    result = release_stale_holds()
    metrics.add_metric(name="AbandonedHoldsReleased", unit=MetricUnit.Count, value=result.holds_released)
    logger.info("stale reservations swept", extra={"tokens": result.tokens_checked, "released": result.holds_released,
                                                   "amount_usd": str(result.amount_released_usd)})
    return {"tokens_checked": result.tokens_checked, "holds_released": result.holds_released,
            "amount_released_usd": str(result.amount_released_usd)}
