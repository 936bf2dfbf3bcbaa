"""The chat surface of the gateway (agents.md §3, §4): the OpenAI-compatible endpoints and the chat threads.

service.py (the completion pipeline), backends.py (PMA and direct inference, retries), threads.py (threads and
messages), request.py (request validation), errors.py (OpenAI-shaped errors), audit.py (chat_audit_log),
limits.py (concurrency), routes.py (thin handlers), queries.py + store.py (SQL).
"""
