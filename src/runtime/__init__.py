"""Our own Lambda Runtime API client, in place of the managed python3.13 runtime loop, so that a
function can answer in Lambda's streaming response mode (API Gateway REST response streaming).

Lambda starts it through AWS_LAMBDA_EXEC_WRAPPER=/var/task/runtime/bootstrap, which execs
`python3 -m runtime` (runtime/client.py holds the loop). Standard library only, and nothing is
imported here: this package is imported on every cold start, and by handler modules for `streaming`.

A streaming handler is marked with `@streaming` (any position among Powertools' decorators: the
mark is found through their functools.wraps chain) and is called as
`handler(event, context, response_stream=stream)`; see runtime.client.ResponseStream.
"""

STREAMING_ATTRIBUTE = "__response_streaming__"


def streaming(handler):
    """Mark `handler` as answering in Lambda's streaming response mode; returns it unchanged."""
    setattr(handler, STREAMING_ATTRIBUTE, True)
    return handler
