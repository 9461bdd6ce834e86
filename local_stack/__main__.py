"""`python -m local_stack` (`make run`): start the local stack, print how to use it, wait for
Ctrl-C or SIGTERM, stop everything, exit 0.

Knobs (environment): GATEWAY_PORT (3000; 0 = any free port), GATEWAY_DEMO_TOKEN, GATEWAY_DEMO_BALANCE_USD
(10), GATEWAY_STORAGE (on/off), UPSTREAM_BASE_URL + UPSTREAM_API_KEY (a real upstream instead of the
emulator), GATEWAY_LOG (function logs: .local/gateway.log, "stdout", or a file), GATEWAY_SHOW_METRICS=1,
GATEWAY_STATE_FILE (write base_url, token, ... as JSON once ready), GATEWAY_PARAMETER_OVERRIDES
("Key=Value ..." for template parameters), GATEWAY_TEMPLATE (another template.yaml).
"""
from __future__ import annotations

import os
import signal
import sys
import threading

from local_stack.stack import LocalStack, StackError
from local_stack.template import TemplateError
from local_stack.upstream import UpstreamError


class _Interrupted(Exception):
    """A signal arrived while the stack was still starting."""


def main() -> int:
    console = sys.stdout  # the stack may point sys.stdout at the function log file
    stopping = threading.Event()
    started = False

    def on_signal(signum: int, frame: object) -> None:
        if not started:
            raise _Interrupted  # abort the start; LocalStack.start() cleans up what it began
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    try:
        stack = LocalStack(console=console)
        print("starting the local stack ...", file=console, flush=True)
        stack.start()
    except _Interrupted:
        return 0
    except (StackError, TemplateError, UpstreamError) as problem:
        print(f"local stack: {problem}", file=sys.stderr)
        return 1
    started = True

    print(stack.banner(), file=console, flush=True)
    state_file = os.environ.get("GATEWAY_STATE_FILE")
    if state_file:
        stack.write_state(state_file)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        stack.stop()
        print("local stack stopped.", file=console, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
