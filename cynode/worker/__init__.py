"""The worker role: node manager, Worker API, sandbox runtime, inference proxy."""
