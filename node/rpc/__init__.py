"""JSON-RPC 2.0 over HTTP: the method table, the dispatcher, the hypercorn server and a client."""
