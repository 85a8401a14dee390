from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import CursorPagination, PageNumberPagination, _positive_int


class _StrictPageSize:
    """A page_size that is not a positive whole number is bad input (400 naming it), not a guess."""

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        try:
            return _positive_int(raw, strict=True, cutoff=self.max_page_size)
        except ValueError:
            raise ValidationError({self.page_size_query_param: ["a whole number from 1"]}) from None


class StandardPagination(_StrictPageSize, PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_number(self, request, paginator):
        # DRF reads an empty ?page= as page 1; the schema says a whole number, and so does the server.
        if request.query_params.get(self.page_query_param) == "":
            raise ValidationError({self.page_query_param: ["empty; leave the parameter out for the first page"]})
        return super().get_page_number(request, paginator)

    def paginate_queryset(self, queryset, request, view=None):
        # DRF answers a page out of range with 404; for a list that is bad input naming the field.
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound as exc:
            raise ValidationError({self.page_query_param: [str(exc.detail)]}) from None


class NewestFirstCursorPagination(_StrictPageSize, CursorPagination):
    """Keyset pagination for the large, append-only lists (activity, audit): no COUNT(*)."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering = "-id"

    def decode_cursor(self, request):
        if request.query_params.get(self.cursor_query_param) == "":
            raise ValidationError({self.cursor_query_param: ["empty; leave the parameter out for the first page"]})
        try:
            return super().decode_cursor(request)
        except NotFound as exc:
            raise ValidationError({self.cursor_query_param: [str(exc.detail)]}) from None
