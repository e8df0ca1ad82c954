"""`r1 serve`: an OpenAI-compatible, reasoning-aware API and a chat page.

protocol.py (the requests it reads) and responses.py (what it writes), text.py (chats into
prompts through the one renderer, token ids into text split by `data.reasoning`),
interface.py (what every serving engine takes and gives back), engine.py (the transformers
engine: continuous batching) and vllm_engine.py, edge.py (authentication, body limits,
errors), app.py (the FastAPI routes), launch.py (engines and the uvicorn server), static/
(the chat page). Nothing heavy is imported here.
"""
