"""Task data: PubMedQA loading, validation, splits and the task-dataset artifact."""

from chimera_core.data.tasks import LABELS, ResearchTask

__all__ = ["LABELS", "ResearchTask"]
