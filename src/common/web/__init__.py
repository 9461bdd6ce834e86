"""The HTTP edge: API Gateway events in, OpenAI-shaped answers out, through a response sink."""
