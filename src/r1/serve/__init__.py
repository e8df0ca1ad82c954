"""`r1 serve`: an OpenAI-compatible, reasoning-aware API and a chat page.

protocol.py (request/response types), reasoning.py (splitting ``<think>`` from the
answer, also while streaming), engine.py (batched generation behind one interface),
app.py (the FastAPI routes), static/ (the chat page). Nothing heavy is imported here.
"""
