"""Content-Security-Policy on every response (settings.CONTENT_SECURITY_POLICY): the console and admin load
scripts and styles only from this server, so an injected <script> does not run. The console has no inline
script (charts read their data from a json_script element). The Swagger UI page (/api/docs/) is drf-spectacular's,
which loads its bundle from a CDN with an inline starter: that one page gets a policy allowing both."""
from django.conf import settings

SWAGGER_POLICY = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
                  "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: "
                  "https://cdn.jsdelivr.net; object-src 'none'; frame-ancestors 'none'")


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = settings.CONTENT_SECURITY_POLICY
        if policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = SWAGGER_POLICY if request.path == "/api/docs/" else policy
        return response
