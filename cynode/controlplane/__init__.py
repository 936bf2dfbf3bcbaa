"""Control plane (:12082): node registration and config, the scheduler and dispatch, readiness inputs."""
