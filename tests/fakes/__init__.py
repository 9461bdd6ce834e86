"""In-memory fakes of the ports in common.ports; tests/contract/ runs one suite against each fake
and its real adapter, so that the flow tests that use the fakes prove something about the real thing."""
