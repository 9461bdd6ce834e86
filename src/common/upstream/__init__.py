"""The upstream: an HTTP transport that knows nothing of images, and OpenAI's images protocol
on top of it (request bodies, refusals the gateway works around, answers, error mapping)."""
