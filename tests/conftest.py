"""Shared by every test: moto's DynamoDB made atomic and cheap per transaction, as the local
stack makes it (local_stack/moto_fidelity.py), so in-process tests see the same service."""
from local_stack import moto_fidelity

moto_fidelity.install()
