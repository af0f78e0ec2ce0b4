from django.contrib import admin
from django.db import models

from apps.core.admin_utils import admin_actor
from apps.storage.models import StorageLocation
from apps.storage.services import save_location


@admin.register(StorageLocation)
class StorageLocationAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "region", "bucket", "path", "storage_class", "immutability", "used_bytes",
                    "capacity_bytes", "is_primary", "enabled"]
    readonly_fields = ["used_bytes", "used_bytes_at"]
    list_filter = ["kind", "is_primary", "enabled"]
    search_fields = ["name", "bucket", "path", "region"]
    # The kind's choices come from the backend registry (the model field's callable choices).
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}

    def save_model(self, request, obj, form, change):
        save_location(location=obj, actor=admin_actor(request))
