"""Celery side of the connector: the app, thin pipeline tasks and scheduled jobs.

``celery -A tasks ...`` finds the app in ``tasks.celery`` (Celery's documented layout).
"""
