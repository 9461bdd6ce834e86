"""One module per API route; each exposes `handler(event, context)` and nothing else."""
