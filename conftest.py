import os

# Test settings: generated dev secrets are allowed, mail and Celery stay in process.
os.environ.setdefault("MANDATE_TESTING", "1")
