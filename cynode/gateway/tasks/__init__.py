"""Tasks on the gateway (orchestrator.md §6): create (JSON or multipart), reads, cancel, attachments."""
