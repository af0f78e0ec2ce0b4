"""Version 1 of the REST API: every app contributes its routes here."""
from django.urls import include, path

app_name = "v1"

urlpatterns = [
]
