"""Read-side queries (HackSoft style). Views call these, never the ORM directly."""

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from challenges.models import Challenge


def challenge_list_public() -> QuerySet[Challenge]:
    return (
        Challenge.objects.filter(is_published=True)
        .annotate(
            n_phases=Count("phases", distinct=True),
            n_train=Count(
                "datasets__cases", filter=Q(datasets__cases__split="train"), distinct=True
            ),
            n_test=Count("datasets__cases", filter=Q(datasets__cases__split="test"), distinct=True),
        )
        .order_by("title")
    )


def challenge_get_public(*, slug: str) -> Challenge:
    try:
        return Challenge.objects.prefetch_related("phases", "datasets").get(
            slug=slug, is_published=True
        )
    except Challenge.DoesNotExist as exc:
        raise Http404(f"No challenge '{slug}'") from exc


def challenge_class_balance(*, challenge: Challenge) -> list[dict[str, object]]:
    """Per split, the number of cases of each class (classification) — the class balance that
    the task card states, because accuracy alone misleads on imbalanced data. Test counts are
    aggregate only and reveal no individual label."""
    rows: list[dict[str, object]] = []
    classes = challenge.classes or []
    for split in ("train", "test"):
        counts = dict(
            Challenge.objects.filter(pk=challenge.pk, datasets__cases__split=split)
            .values_list("datasets__cases__label")
            .annotate(n=Count("datasets__cases"))
            .values_list("datasets__cases__label", "n")
        )
        total = sum(counts.values())
        if not total:
            continue
        per_class = []
        for i, name in enumerate(classes):
            n = counts.get(str(i), 0)
            per_class.append({"name": name, "n": n, "percent": 100.0 * n / total})
        rows.append({"split": split, "total": total, "classes": per_class})
    return rows
