"""Admin: alerts with acknowledge / resolve actions (recording the admin user), channels with write-only secrets
and a test-send action, alert rules, and the delivery outbox (read-only)."""
import json

from django import forms
from django.contrib import admin, messages

from apps.core.admin_utils import RecordAdmin, admin_actor
from apps.core.errors import UserError
from apps.core.roles import ADMIN, OPERATOR, has_role
from apps.monitoring.models import Alert, AlertRule, Delivery, HealthCheck, NotificationChannel


@admin.register(Alert)
class AlertAdmin(RecordAdmin, admin.ModelAdmin):
    list_display = ["last_seen", "severity", "type", "target", "status", "count", "message", "acknowledged_by",
                    "resolved_by"]
    list_filter = ["status", "severity", "type"]
    search_fields = ["target", "message", "fingerprint"]
    actions = ["acknowledge", "resolve"]

    def _act(self, request, queryset, service, verb: str):
        if not has_role(request.user, OPERATOR):
            self.message_user(request, f"To {verb} alerts needs the operator role.", messages.ERROR)
            return
        done = 0
        for alert in queryset:
            try:
                service(alert=alert, actor=admin_actor(request), note=f"{verb.capitalize()}d in the admin.")
                done += 1
            except UserError as exc:
                self.message_user(request, f"{alert}: {exc}", messages.WARNING)
        if done:
            self.message_user(request, f"{done} alert(s) {verb}d.", messages.SUCCESS)

    @admin.action(description="Acknowledge selected alerts")
    def acknowledge(self, request, queryset):
        from apps.monitoring import services

        self._act(request, queryset, services.acknowledge, "acknowledge")

    @admin.action(description="Resolve selected alerts")
    def resolve(self, request, queryset):
        from apps.monitoring import services

        self._act(request, queryset, services.resolve, "resolve")


class ChannelForm(forms.ModelForm):
    secrets = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
        help_text='Write-only JSON object, e.g. {"webhook_url": "https://..."}: the keys given replace the stored '
                  'ones ("" clears one); leave empty to keep them. Stored values are never shown.')

    class Meta:
        model = NotificationChannel
        fields = ["name", "kind", "enabled", "min_severity", "config"]

    def clean_secrets(self):
        raw = self.cleaned_data["secrets"].strip()
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            raise forms.ValidationError("Not valid JSON.") from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise forms.ValidationError("A JSON object of strings.")
        return value

    def clean(self):
        from apps.monitoring import services

        data = super().clean()
        if self.errors:
            return data
        stored = self.instance.get_secrets() if self.instance.pk and self.instance.secrets_sealed else {}
        stored.update(data.get("secrets") or {})
        try:
            services.check_channel(kind=data["kind"], config=data.get("config") or {},
                                   secrets={k: v for k, v in stored.items() if v})
        except UserError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(NotificationChannel)
class NotificationChannelAdmin(admin.ModelAdmin):
    form = ChannelForm
    list_display = ["name", "kind", "min_severity", "enabled", "secrets_set"]
    list_filter = ["kind", "enabled"]
    actions = ["send_test"]

    @admin.display(description="Secrets set")
    def secrets_set(self, obj):
        return ", ".join(obj.secret_names) or "-"

    def save_model(self, request, obj, form, change):
        from apps.monitoring import services

        services.save_channel(channel=obj, actor=admin_actor(request), secrets=form.cleaned_data.get("secrets"))

    def delete_model(self, request, obj):
        from apps.monitoring import services

        services.delete_channel(channel=obj, actor=admin_actor(request))

    @admin.action(description="Send a test notification")
    def send_test(self, request, queryset):
        from apps.monitoring import services

        if not has_role(request.user, ADMIN):
            self.message_user(request, "Test sends need the admin role.", messages.ERROR)
            return
        for channel in queryset:
            delivery = services.test_channel(channel=channel, actor=admin_actor(request))
            if delivery.status == "sent":
                self.message_user(request, f"{channel.name}: sent ({delivery.response_code}).", messages.SUCCESS)
            else:
                self.message_user(request, f"{channel.name}: failed: {delivery.error}", messages.ERROR)


class AlertRuleForm(forms.ModelForm):
    class Meta:
        model = AlertRule
        fields = ["type", "database_target", "location", "enabled", "severity", "params"]

    def clean(self):
        from apps.monitoring import services

        data = super().clean()
        if not self.errors:
            for field in self.Meta.fields:
                setattr(self.instance, field, data.get(field))
            try:
                services.check_rule(self.instance)
            except UserError as exc:
                raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = ["type", "database_target", "location", "enabled", "severity", "params"]
    list_filter = ["type", "enabled"]

    def save_model(self, request, obj, form, change):
        from apps.monitoring import services

        services.save_rule(rule=obj, actor=admin_actor(request))

    def delete_model(self, request, obj):
        from apps.monitoring import services

        services.delete_rule(rule=obj, actor=admin_actor(request))


@admin.register(Delivery)
class DeliveryAdmin(RecordAdmin, admin.ModelAdmin):
    list_display = ["created_at", "channel", "event", "alert", "status", "attempts", "next_attempt_at",
                    "response_code", "error"]
    list_filter = ["status", "event", "channel"]


@admin.register(HealthCheck)
class HealthCheckAdmin(RecordAdmin, admin.ModelAdmin):
    list_display = ["probe", "subject", "ok", "checked_at", "detail"]
    list_filter = ["probe", "ok"]
