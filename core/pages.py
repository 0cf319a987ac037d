"""Page helpers shared by the dashboard's apps: the viewer-role page base, paging, and the
answer to an htmx request whose session ended."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.views.generic import TemplateView
from django_htmx.http import HttpResponseClientRedirect, HttpResponseClientRefresh

from .roles import VIEWER, has_role, user_role


def sign_in_again(request) -> HttpResponseClientRedirect:
    """For an htmx request whose session is gone: send the whole page to the sign-in page (a plain
    redirect would put the sign-in form inside the refreshed part)."""
    back = request.htmx.current_url_abs_path or "/"
    return HttpResponseClientRedirect(f"{settings.LOGIN_URL}?{urlencode({'next': back})}")


class ViewerPage(LoginRequiredMixin, TemplateView):
    """A page for signed-in users with at least the viewer role."""

    def dispatch(self, request, *args, **kwargs):
        if request.htmx and not request.user.is_authenticated:
            return sign_in_again(request)
        if request.htmx and not has_role(request.user, VIEWER):
            return HttpResponseClientRefresh()  # the role was taken away: reload, and see why
        if request.user.is_authenticated and not has_role(request.user, VIEWER):
            raise PermissionDenied("You need the viewer role.")
        return super().dispatch(request, *args, **kwargs)

    page_size = 50

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["role"] = user_role(self.request.user)
        return context

    def paged(self, rows) -> dict:
        """One page of ``rows`` (``?page=``), and the query string without the page for links."""
        query = self.request.GET.copy()
        query.pop("page", None)
        return {
            "page": Paginator(rows, self.page_size).get_page(self.request.GET.get("page")),
            "query": query.urlencode(),
        }
