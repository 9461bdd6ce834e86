"""`python -m runtime`: the Lambda runtime loop (what runtime/bootstrap execs)."""
from runtime.client import main

raise SystemExit(main())
