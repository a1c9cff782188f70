"""The replay of a campaign: a self-contained HTML page and a PNG of key frames.

``replay.html`` inlines every run's tracks (:mod:`.replay`) as JSON in a
``<script type="application/json">`` and draws them with a short script of its own (no CDN, no
server): for the chosen scenario and N, one canvas per architecture, peers × pieces, each cell
coloured by where the piece came from, under one time slider and a play button. The PNG shows
the same grid at four moments for the Markdown report.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubswarm.lab.metrics import RunResult
from hubswarm.lab.replay import SOURCES, frame, recorded, replay_tracks
from hubswarm.lab.table import architectures_of

__all__ = ["COLOURS", "Group", "default_group", "groups", "write_keyframes", "write_replay"]

COLOURS = {"s": "#1f77b4", "p": "#ff7f0e", "w": "#2ca02c"}
_NAMES = {"s": "blue", "p": "orange", "w": "green"}
_EMPTY = "#e8e8e8"
# The key frames of the PNG: these fractions of the group's last arrival.
KEY_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True, slots=True)
class Group:
    """The runs of one scenario at one N (and one point of an RTT/loss sweep)."""

    label: str
    runs: tuple[RunResult, ...]

    @property
    def end(self) -> float:
        """The last piece arrival of any run: the replay's last frame."""
        ends = [t for r in self.runs for tr in replay_tracks(r) for t in tr.times]
        return max(ends, default=0.0)


def groups(results: Sequence[RunResult]) -> list[Group]:
    """The runs that have something to replay, by scenario, N and network point."""
    by_key: dict[tuple[str, int, float, float], list[RunResult]] = {}
    for r in results:
        if replay_tracks(r):
            by_key.setdefault((r.scenario, r.n, r.rtt, r.loss), []).append(r)
    out = []
    for (scenario, n, rtt, loss), runs in by_key.items():
        order = architectures_of(runs)
        label = f"{scenario} N={n}"
        if rtt or loss:
            label += f" (RTT {1000 * rtt:g} ms, loss {100 * loss:g}%)"
        out.append(Group(label, tuple(sorted(runs, key=lambda r: order.index(r.architecture)))))
    return out


def default_group(found: Sequence[Group]) -> int:
    """The group a reader sees first: client-server beside a swarm, the sweep's largest N."""
    if not found:
        return 0
    sweeps: dict[str, set[int]] = {}
    for g in found:
        sweeps.setdefault(g.runs[0].scenario, set()).add(g.runs[0].n)

    def rank(i: int) -> tuple[bool, bool, int, int]:
        g = found[i]
        both = len({r.architecture for r in g.runs}) > 1
        done = all(any(c.complete for c in r.clients) for r in g.runs)
        return done, both, len(sweeps[g.runs[0].scenario]), g.runs[0].n

    return max(range(len(found)), key=rank)


def _how(run: RunResult) -> str:
    """How the rows were drawn, where it is not from the peers' own piece events."""
    if run.tracks:
        return ""
    if recorded(run):
        return "drawn from each client's bytes received over time"
    return "estimated from each client's start, end and bytes (no recording in this runs.json)"


def _run_data(run: RunResult) -> dict[str, Any]:
    tracks = replay_tracks(run)
    return {
        "arch": run.architecture,
        "pieces": run.pieces,
        "n": run.n,
        "how": _how(run),
        "rows": [[t.client, t.times, t.pieces, t.sources] for t in tracks],
    }


_CSS = """
body{font-family:system-ui,sans-serif;max-width:76rem;margin:1.5rem auto;padding:0 1rem;color:#222}
.runs{display:flex;flex-wrap:wrap;gap:1.5rem;margin-top:1rem}
.run h3{margin:.2rem 0;font-size:1rem} canvas{border:1px solid #bbb;image-rendering:pixelated}
.controls{display:flex;gap:1rem;align-items:center;flex-wrap:wrap}
#slider{width:24rem} .legend span{display:inline-block;width:.9rem;height:.9rem;margin:0 .3rem}
.caption{font-size:.85rem;color:#555}
"""

_SCRIPT = """
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("replay-data").textContent);
  const colours = data.colours, empty = data.empty;
  const pick = document.getElementById("group"), slider = document.getElementById("slider");
  const play = document.getElementById("play"), clock = document.getElementById("clock");
  const area = document.getElementById("runs");
  let views = [], end = 0, timer = null;
  data.groups.forEach(function (g, i) {
    const o = document.createElement("option");
    o.value = String(i); o.textContent = g.label; pick.appendChild(o);
  });
  function build(i) {
    const g = data.groups[i];
    area.textContent = ""; views = []; end = g.end;
    g.runs.forEach(function (run) {
      const box = document.createElement("div"); box.className = "run";
      const h = document.createElement("h3"); h.textContent = run.arch; box.appendChild(h);
      const rows = run.rows.length, cw = Math.max(1, Math.floor(360 / run.pieces));
      const ch = Math.max(2, Math.min(24, Math.floor(320 / Math.max(rows, 1))));
      const c = document.createElement("canvas");
      c.width = cw * run.pieces; c.height = ch * rows; c.dataset.arch = run.arch;
      box.appendChild(c);
      const cap = document.createElement("div"); cap.className = "caption";
      cap.dataset.arch = run.arch; box.appendChild(cap);
      area.appendChild(box);
      views.push({run: run, canvas: c, caption: cap, cw: cw, ch: ch});
    });
    slider.value = "0"; draw();
  }
  function draw() {
    const t = end * Number(slider.value) / Number(slider.max);
    clock.textContent = "t = " + t.toFixed(2) + " s of " + end.toFixed(2) + " s";
    views.forEach(function (v) {
      const ctx = v.canvas.getContext("2d"), run = v.run;
      ctx.fillStyle = empty; ctx.fillRect(0, 0, v.canvas.width, v.canvas.height);
      let complete = 0;
      run.rows.forEach(function (row, y) {
        const times = row[1], pieces = row[2], sources = row[3];
        let held = 0;
        for (let k = 0; k < times.length; k++) {
          if (times[k] > t) continue;
          held++;
          ctx.fillStyle = colours[sources[k]] || "#000";
          ctx.fillRect(pieces[k] * v.cw, y * v.ch, v.cw, Math.max(1, v.ch - 1));
        }
        if (held >= run.pieces) complete++;
      });
      v.canvas.dataset.complete = String(complete);
      v.canvas.dataset.frame = slider.value;
      v.caption.textContent = complete + "/" + run.rows.length + " complete" +
        (run.rows.length < run.n ? " (" + run.rows.length + " of " + run.n + " shown)" : "") +
        (run.how ? "; " + run.how : "");
    });
  }
  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    play.textContent = "play";
  }
  play.addEventListener("click", function () {
    if (timer !== null) { stop(); return; }
    if (Number(slider.value) >= Number(slider.max)) slider.value = "0";
    play.textContent = "pause";
    timer = setInterval(function () {
      slider.value = String(Math.min(Number(slider.max), Number(slider.value) + 4));
      draw();
      if (Number(slider.value) >= Number(slider.max)) stop();
    }, 40);
  });
  slider.addEventListener("input", function () { stop(); draw(); });
  pick.addEventListener("change", function () { stop(); build(Number(pick.value)); });
  pick.value = String(data.initial);
  build(data.initial);
})();
"""


def replay_html(results: Sequence[RunResult], title: str) -> str | None:
    """The replay page of ``results``, or None when no run has anything to replay."""
    found = groups(results)
    if not found:
        return None
    payload = {
        "colours": COLOURS,
        "empty": _EMPTY,
        "initial": default_group(found),
        "groups": [
            {"label": g.label, "end": g.end, "runs": [_run_data(r) for r in g.runs]} for g in found
        ],
    }
    # "</" cannot end the script element early: JSON allows "<\\/" for "</".
    data = json.dumps(payload, separators=(",", ":")).replace("</", "<\\/")
    legend = "".join(
        f'<span style="background:{COLOURS[k]}"></span>{html.escape(v)}' for k, v in SOURCES.items()
    )
    return "\n".join(
        [
            "<!doctype html><html lang=en><head><meta charset=utf-8>",
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(title)}</h1>",
            "<p>Each row is a client, each column a piece of the file; a cell fills when the "
            "client has verified that piece, coloured by where it came from. Client-server "
            "clients fill front to back from one source; a swarm's pieces come from everywhere."
            "</p>",
            '<div class="controls"><label>run <select id="group"></select></label>'
            '<button id="play" type="button">play</button>'
            '<input id="slider" type="range" min="0" max="1000" value="0">'
            f'<span id="clock"></span><span class="legend">{legend}'
            f'<span style="background:{_EMPTY}"></span>not yet</span></div>',
            '<div class="runs" id="runs"></div>',
            f'<script type="application/json" id="replay-data">{data}</script>',
            f"<script>{_SCRIPT}</script>",
            "</body></html>",
        ]
    )


def write_replay(results: Sequence[RunResult], path: Path, title: str) -> Path | None:
    """Write :func:`replay_html` to ``path``; None (nothing written) without tracks."""
    page = replay_html(results, title)
    if page is None:
        return None
    path.write_text(page, encoding="utf-8")
    return path


def write_keyframes(results: Sequence[RunResult], path: Path) -> Path | None:
    """The default group's grids at four moments, one row of panels per architecture."""
    found = groups(results)
    if not found:
        return None
    group = found[default_group(found)]
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    codes = {".": 0, "s": 1, "p": 2, "w": 3}
    cmap = ListedColormap([_EMPTY, COLOURS["s"], COLOURS["p"], COLOURS["w"]])
    rows, cols = len(group.runs), len(KEY_FRACTIONS)
    fig = Figure(figsize=(2.4 * cols + 0.6, 1.9 * rows + 0.9))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, run in enumerate(group.runs):
        tracks = replay_tracks(run)
        for c, fraction in enumerate(KEY_FRACTIONS):
            t = group.end * fraction
            shot = frame(tracks, run.pieces, t)
            grid = [[codes.get(x, 0) for x in row] for row in shot.cells]
            ax = axes[r][c]
            ax.imshow(grid, cmap=cmap, vmin=0, vmax=3, aspect="auto", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"t = {t:.1f} s: {shot.complete}/{len(tracks)} done", fontsize="small")
            if c == 0:
                ax.set_ylabel(run.architecture)
    fig.suptitle(f"{group.label}: clients × pieces over time", fontsize="medium")
    names = ", ".join(f"{_NAMES[k]}: {v}" for k, v in SOURCES.items())
    fig.text(0.5, 0.01, f"{names}, grey: not yet", ha="center", fontsize="small")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=90)
    return path
