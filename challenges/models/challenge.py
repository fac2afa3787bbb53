from django.conf import settings
from django.db import models
from django.urls import reverse


class TaskType(models.TextChoices):
    CLASSIFICATION = "classification", "Classification"
    SEGMENTATION = "segmentation", "Segmentation"
    PROGRAM = "program", "Scored by the organizers' program"


class Challenge(models.Model):
    """A data set published as a machine-learning task, described in plain ML language."""

    slug = models.SlugField(unique=True, max_length=64)
    title = models.CharField(max_length=200)
    summary = models.TextField(
        help_text="Plain-language summary for ML researchers: no clinical jargon.",
    )
    task_type = models.CharField(max_length=32, choices=TaskType.choices)
    input_description = models.TextField(
        blank=True, help_text="What goes in: file type, size, channels, spacing."
    )
    output_description = models.TextField(
        blank=True, help_text="What comes out: a score per case, a mask per case, ..."
    )
    classes = models.JSONField(
        default=list,
        blank=True,
        help_text="Class names in label order (classification) or label names (segmentation).",
    )
    data_licence = models.CharField(
        max_length=200, help_text="Licence of the data, e.g. CC BY 4.0."
    )
    data_attribution = models.TextField(help_text="Who made the data and how to cite it.")
    terms = models.TextField(
        blank=True,
        help_text="Terms a participant accepts when joining (empty: a short default text).",
    )
    organizers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="organized_challenges", blank=True
    )
    is_published = models.BooleanField(
        default=False,
        help_text="Shown to everyone. New challenges start unpublished: the organizers check "
        "them first.",
    )
    requires_approval = models.BooleanField(
        default=False,
        help_text="Joining needs an organizer's approval before the data and submissions open.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("challenges:detail", kwargs={"slug": self.slug})
