"""Powertools singletons, created once per container and shared by every module."""
from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
metrics = Metrics()
# Patch only what the gateway calls (AWS SDK, the upstream via requests): patching everything
# imports asyncio, sqlite3 and more, which costs cold-start time for nothing.
tracer = Tracer(patch_modules=("botocore", "requests"))
