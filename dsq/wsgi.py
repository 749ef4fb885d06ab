"""WSGI entry point (gunicorn dsq.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dsq.settings")
application = get_wsgi_application()
