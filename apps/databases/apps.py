from django.apps import AppConfig


class DatabasesConfig(AppConfig):
    name = "apps.databases"
    label = "databases"
