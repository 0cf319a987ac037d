"""Responses that show a signed-in user's data are not to be kept by browsers or proxies."""

from __future__ import annotations


class NoStoreMiddleware:
    """``Cache-Control: no-store`` on every answer but static files, unless a view said otherwise."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith("/static/") and "Cache-Control" not in response:
            response["Cache-Control"] = "no-store"
        return response
