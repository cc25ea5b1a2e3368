"""Sub-commands of the ``bonetumor`` CLI; each module exposes ``register(subparsers)``."""
