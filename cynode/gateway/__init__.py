"""User API Gateway (:12080): auth, users, tasks, chat, settings."""
