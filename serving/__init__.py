"""The clinops serving demo: a FastAPI service on the package's privacy, uncertainty, audit and
governance modules (issue 7). Build the app with :func:`serving.app.create_app`; run it with
``python -m serving``."""
from serving.app import create_app

__all__ = ["create_app"]
