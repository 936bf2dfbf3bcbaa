"""HTTP conventions shared by every listener: problem+json, request ids, body limits, health, the server runner."""
