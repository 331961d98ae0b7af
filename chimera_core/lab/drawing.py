"""Pictures of the workflow: Mermaid text and an offline PNG (matplotlib, no web service).

The edges come from the graph builder's declarations (static edges, conditional path maps,
Command destinations) rather than from LangGraph's simulated run, which invents edges around
deferred nodes such as the supervisor.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from langchain_core.runnables.graph import Graph
from langgraph.graph import END, START

from chimera_core.errors import ChimeraError
from chimera_core.lab.graph import LabGraph

Edge = tuple[str, str, str | None, bool]  # source, target, label, conditional

TIER_COLOURS = {
    "junior": "#cfe8ff",
    "supervisor": "#ffe7b3",
    "senior": "#d7f5d0",
    "board": "#f6d2e6",
    "tools": "#eeeeee",
    "terminal": "#ffffff",
}


def workflow_edges(graph: LabGraph) -> list[Edge]:
    """Declared edges, one per (source, target); labels of parallel routes are joined."""
    builder = graph.builder
    labels: dict[tuple[str, str], list[str]] = defaultdict(list)
    conditional: dict[tuple[str, str], bool] = {}
    for src, dst in builder.edges:
        conditional[(src, dst)] = False
    for src, branches in builder.branches.items():
        for branch in branches.values():
            for label, dst in (branch.ends or {}).items():
                labels[(src, dst)].append(str(label))
                conditional[(src, dst)] = True
    for name, spec in builder.nodes.items():
        ends = spec.ends.values() if isinstance(spec.ends, Mapping) else spec.ends or ()
        for dst in ends:
            conditional[(name, dst)] = True
    edges = []
    for (src, dst), cond in sorted(conditional.items()):
        shown = [lb for lb in labels[(src, dst)] if lb not in {"tools", "done"}]
        edges.append((src, dst, " / ".join(shown).replace("_", " ") or None, cond))
    return edges


def workflow_graph(graph: LabGraph) -> Graph:
    """The workflow as a langchain-core ``Graph`` (what LangGraph's own drawing uses)."""
    drawn = Graph()
    names = [START, *graph.builder.nodes, END]
    deferred = {name for name, spec in graph.builder.nodes.items() if spec.defer}
    nodes = {
        name: drawn.add_node(None, name, metadata={"defer": True} if name in deferred else None)
        for name in names
    }
    for src, dst, label, cond in workflow_edges(graph):
        drawn.add_edge(nodes[src], nodes[dst], data=label, conditional=cond)
    return drawn


def to_mermaid(graph: LabGraph) -> str:
    """Mermaid flowchart text of the workflow."""
    return workflow_graph(graph).draw_mermaid()


def _layers(edges: list[Edge], side: set[str]) -> dict[str, int]:
    """Longest-path layer of each node over forward edges (back edges found by DFS)."""
    succ: dict[str, list[str]] = defaultdict(list)
    for src, dst, _, _ in edges:
        if src not in side and dst not in side:
            succ[src].append(dst)
    back: set[tuple[str, str]] = set()
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        state[node] = 1
        for nxt in succ[node]:
            if state.get(nxt) == 1:
                back.add((node, nxt))
            elif nxt not in state:
                visit(nxt)
        state[node] = 2

    visit(START)
    layer = {START: 0}
    changed = True
    while changed:
        changed = False
        for src, dsts in succ.items():
            for dst in dsts:
                if (src, dst) not in back and src in layer and layer.get(dst, -1) <= layer[src]:
                    layer[dst] = layer[src] + 1
                    changed = True
    return layer


ROW_GAP = 1.3
COL_GAP = 2.9
BOX_W, BOX_H = 2.4, 0.5
TOOL_COLOUR = "#2a7f9e"


def _positions(edges: list[Edge], side: set[str]) -> dict[str, tuple[float, float]]:
    """Layers top-down, nodes of a layer side by side; hub nodes (tools) in a right column."""
    layer = _layers(edges, side)
    rows: dict[int, list[str]] = defaultdict(list)
    for node, depth in layer.items():
        rows[depth].append(node)
    pos: dict[str, tuple[float, float]] = {}
    for depth, row in rows.items():
        for i, node in enumerate(row):
            pos[node] = ((i - (len(row) - 1) / 2) * COL_GAP, -depth * ROW_GAP)
    right = max(x for x, _ in pos.values()) + COL_GAP
    for node in side:
        neighbours = [n for s, d, _, _ in edges for n in (s, d) if node in (s, d) and n in pos]
        top = max((pos[n][1] for n in neighbours), default=0.0)
        # Sits on the bus between the first neighbouring row and the row below it.
        pos[node] = (right, top - ROW_GAP / 2)
    return pos


class _Canvas:
    """Boxes and orthogonal connectors on a matplotlib axis."""

    def __init__(self, ax: Any) -> None:
        self.ax = ax

    def box(self, x: float, y: float, label: str, colour: str, rounded: bool) -> None:
        from matplotlib.patches import FancyBboxPatch

        style = "round,pad=0.02,rounding_size=0.25" if rounded else "round,pad=0.02"
        self.ax.add_patch(
            FancyBboxPatch(
                (x - BOX_W / 2, y - BOX_H / 2),
                BOX_W,
                BOX_H,
                boxstyle=style,
                facecolor=colour,
                edgecolor="#333333",
                linewidth=1.2,
                zorder=3,
            )
        )
        self.ax.text(
            x, y, label, ha="center", va="center", fontsize=10, fontweight="bold", zorder=4
        )

    def path(
        self,
        points: list[tuple[float, float]],
        dashed: bool,
        both: bool = False,
        colour: str | None = None,
    ) -> None:
        """A polyline with an arrowhead at its end (and its start when ``both``)."""
        style = "--" if dashed else "-"
        colour = colour or ("#555555" if dashed else "#111111")
        xs, ys = zip(*points, strict=True)
        self.ax.plot(xs, ys, linestyle=style, color=colour, linewidth=1.1, zorder=1)
        heads = [(points[-2], points[-1])] + ([(points[1], points[0])] if both else [])
        for tail, head in heads:
            self.ax.annotate(
                "",
                xy=head,
                xytext=tail,
                zorder=2,
                arrowprops={
                    "arrowstyle": "-|>",
                    "color": colour,
                    "lw": 1.1,
                    "mutation_scale": 14,
                    "shrinkA": 0,
                    "shrinkB": 0,
                },
            )

    def label(self, x: float, y: float, text: str) -> None:
        self.ax.text(
            x,
            y,
            text,
            ha="center",
            va="center",
            fontsize=8.5,
            style="italic",
            zorder=5,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0},
        )


def draw_png(graph: LabGraph, path: Path, tiers: Mapping[str, str] | None = None) -> None:
    """Render the workflow to a PNG: layered top-down, back edges on the left, tools on a bus."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    edges = workflow_edges(graph)
    side = {name for name, spec in graph.builder.nodes.items() if spec.ends}
    pos = _positions(edges, side)
    tiers = dict(tiers or {})
    xs = [x for x, _ in pos.values()]
    ys = [y for _, y in pos.values()]
    fig, ax = plt.subplots(figsize=(max(xs) - min(xs) + 4.5, max(ys) - min(ys) + 2.2))
    ax.set_xlim(min(xs) - 2.4, max(xs) + 1.8)
    ax.set_ylim(min(ys) - 0.6, max(ys) + 0.8)
    ax.axis("off")
    canvas = _Canvas(ax)
    for node, (x, y) in pos.items():
        tier = tiers.get(node, "tools" if node in side else "terminal")
        text = {START: "START", END: "END"}.get(node, node)
        canvas.box(x, y, text, TIER_COLOURS.get(tier, "#ffffff"), node in (START, END))
    hw, hh = BOX_W / 2, BOX_H / 2
    lane = 0
    tool_pairs: set[tuple[str, str]] = set()
    for src, dst, label, cond in edges:
        (x1, y1), (x2, y2) = pos[src], pos[dst]
        if src in side or dst in side:
            hub, agent = (src, dst) if src in side else (dst, src)
            tool_pairs.add((hub, agent))
            continue
        if y2 < y1:  # downward: bottom centre to top centre
            canvas.path([(x1, y1 - hh), (x2, y2 + hh)], cond)
            if label:
                canvas.label((x1 + x2) / 2, (y1 + y2) / 2, label)
        else:  # back edge: out of the left side, up a lane of its own, into the left side
            lane += 1
            lx = min(x1, x2) - hw - 0.35 * lane
            canvas.path([(x1 - hw, y1), (lx, y1), (lx, y2), (x2 - hw, y2)], cond)
            if label:
                canvas.label(lx, (y1 + y2) / 2, label)
    for hub, agent in sorted(tool_pairs):
        (hx, hy), (ax_, ay) = pos[hub], pos[agent]
        if ay > hy:  # a row above the hub: down from the agent's box to the bus, then across
            start = (ax_ + hw * 0.6, ay - hh)
            canvas.path([start, (start[0], hy), (hx - hw, hy)], True, True, TOOL_COLOUR)
        else:  # a row at or below the hub: across to the hub's column, then up
            canvas.path([(ax_ + hw, ay), (hx, ay), (hx, hy - hh)], True, True, TOOL_COLOUR)
    for hub in side:
        hx, hy = pos[hub]
        canvas.label(hx, hy + hh + 0.18, "tool calls / results go back to the caller")
    for name, spec in graph.builder.nodes.items():
        if spec.defer:
            x, y = pos[name]
            canvas.label(x - hw - 0.05, y - hh - 0.12, "runs once every branch above is done")
    legend = [
        Patch(facecolor=TIER_COLOURS[t], edgecolor="#333333", label=t)
        for t in ("junior", "supervisor", "senior", "board", "tools")
    ]
    ax.legend(handles=legend, loc="lower right", fontsize=9, title="tier", frameon=False)
    ax.set_title("Chimera research lab workflow (dashed: conditional)", fontsize=12)
    fig.savefig(path, dpi=130, bbox_inches="tight")
    plt.close(fig)


def write_drawing(graph: LabGraph, out: Path, tiers: Mapping[str, str] | None = None) -> Path:
    """Write ``.mmd`` (Mermaid) or ``.png``, chosen by the file's suffix."""
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix in {".mmd", ".mermaid"}:
        out.write_text(to_mermaid(graph))
    elif suffix == ".png":
        draw_png(graph, out, tiers)
    else:
        raise ChimeraError(f"unsupported drawing format {suffix!r} (expected .png or .mmd)")
    return out


def role_tiers(roles: Mapping[str, Any]) -> dict[str, str]:
    """Node name -> tier, from ``config.roles``."""
    return {name: str(role.tier) for name, role in roles.items()}
