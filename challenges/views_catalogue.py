"""The data set catalogue (docs/catalogue.md): ``/datasets/``, a filterable table of the public
data sets of the seed review, and ``/datasets/<slug>/template.zip``, a challenge bundle skeleton
for one of them. Filters are GET parameters read on the server; a bad value is dropped with a
message, never an error page."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views import View

from challenges.catalogue import (
    SIZE_BUCKETS,
    TASKS,
    dataset_filter,
    dataset_get,
    datasets,
    modalities,
    template_zip,
)

#: the longest search text accepted (longer text is refused with a message)
MAX_QUERY = 100


def _filters(request: HttpRequest) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The valid filters of the query string and a message for each value that was dropped
    (``lead``, the ``value`` as given, shortened, and ``tail``: the page shows the value as code,
    which wraps anywhere, so a long value never widens the page)."""
    allowed = {
        "task": (set(TASKS), "task"),
        "modality": (set(modalities()), "modality"),
        "size": (set(SIZE_BUCKETS), "size"),
    }
    filters = {"task": "", "modality": "", "size": "", "q": ""}
    problems: list[dict[str, str]] = []
    for key, (choices, word) in allowed.items():
        value = request.GET.get(key, "").strip()
        if value and value not in choices:
            shown = value if len(value) <= 40 else value[:40] + "…"
            problems.append(
                {
                    "lead": f"Unknown {word}",
                    "value": shown,
                    "tail": ": that filter was not applied.",
                }
            )
        else:
            filters[key] = value
    q = request.GET.get("q", "")
    if len(q) > MAX_QUERY:
        problems.append(
            {"lead": f"The search text is longer than {MAX_QUERY} characters: not applied."}
        )
    elif "\x00" in q or any(ord(ch) < 32 for ch in q):
        problems.append({"lead": "The search text holds control characters: not applied."})
    else:
        filters["q"] = q.strip()
    return filters, problems


class CatalogueView(View):
    def get(self, request: HttpRequest) -> HttpResponse:
        filters, problems = _filters(request)
        rows = dataset_filter(**filters)
        context = {
            "rows": rows,
            "total": len(datasets()),
            "filters": filters,
            "problems": problems,
            "tasks": TASKS.items(),
            "modalities": modalities(),
            "sizes": [(key, label) for key, (label, _, _) in SIZE_BUCKETS.items()],
            "max_query": MAX_QUERY,
            "filtered": any(filters.values()),
        }
        return render(request, "challenges/catalogue.html", context)


def template_download(request: HttpRequest, slug: str) -> HttpResponse:
    entry = dataset_get(slug)
    if entry is None or not entry.has_template:
        raise Http404("no bundle template for this data set")
    response = HttpResponse(template_zip(entry), content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{entry.slug}-template.zip"'
    return response
