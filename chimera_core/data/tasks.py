"""The unit of work of the lab: one research question with its context and label."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Label = Literal["yes", "no", "maybe"]
LABELS: tuple[Label, ...] = ("yes", "no", "maybe")


class ResearchTask(BaseModel):
    """A PubMedQA item as the lab sees it. The abstract's conclusion is never stored here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="PubMed id (PMID).")
    goal: str = Field(description="The research question.")
    context: str = Field(description="The abstract's context paragraphs, joined.")
    expected_decision: Label = Field(description="Expert label; never shown to an agent.")
    split: str = Field("unsplit", description="Dataset split this task belongs to.")
    meshes: list[str] = Field(default_factory=list, description="MeSH terms.")
    year: str | None = None

    def agent_view(self) -> dict[str, str]:
        """What an agent may see: the question and the context, nothing else."""
        return {"id": self.id, "goal": self.goal, "context": self.context}
