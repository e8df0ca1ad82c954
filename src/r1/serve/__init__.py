"""`r1 serve`: an OpenAI-compatible, reasoning-aware API and a chat page.

protocol.py (the requests it reads) and responses.py (what it writes), reasoning.py
(splitting ``<think>`` from the answer, also while streaming), text.py (chats into prompts,
token ids into text), interface.py (what every serving engine takes and gives back),
engine.py (the transformers engine: continuous batching) and vllm_engine.py, edge.py
(authentication, body limits, errors), app.py (the FastAPI routes), launch.py (engines and
the uvicorn server), static/ (the chat page). Nothing heavy is imported here.
"""
