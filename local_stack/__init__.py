"""The whole gateway on 127.0.0.1 without Docker or an AWS account (`make run`).

`python -m local_stack` reads template.yaml, starts moto (DynamoDB, S3, Secrets Manager), an
upstream (the emulator in upstream_emulator.py, or a real one), and an API Gateway REST emulation
that calls the real handlers in-process. See local_stack/stack.py.
"""
