"""r1: an open, runnable implementation of the DeepSeek-R1 training system.

Importing the package is cheap on purpose: nothing here imports torch or
transformers, so pure modules (prompts, rewards, algorithms' docs, CLI help) load
instantly. Heavy libraries are imported inside the functions that need them.
"""

__version__ = "0.1.0"
