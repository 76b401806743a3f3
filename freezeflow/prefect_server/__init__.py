"""How freezeflow runs Prefect's server for a team: which database (SQLite or PostgreSQL), who may call its
API (the auth string), and how SQLite is configured so that no request loses a race for its write lock.

Nothing here imports Prefect at import time; ``python -m freezeflow.prefect_server`` runs the server."""
