"""The trajectory page: panels side by side on one normalized time axis, a play/pause button, a step slider and
keyboard arrows; each token marked by whether it changed since the panel's previous frame.

The marks never rely on colour alone (colour-blind and greyscale safe): a changed token is also bold and
underlined, a masked position is a dashed box in small monospace, a pinned token is italic with a double
underline, an infilled token has a dotted line above it. The page data comes from
:func:`elfctl.view.trajectories.page_data`; the script only draws it.
"""

from __future__ import annotations

from typing import Sequence

from elfctl.view.document import esc, json_script, page
from elfctl.view.trajectories import Panel, page_data

CSS = """
.controls { position: sticky; top: 0; z-index: 2; background: var(--bg); padding: 8px 0; display: flex;
            flex-wrap: wrap; gap: 8px 12px; align-items: center; border-bottom: 1px solid var(--line); }
.controls button { font: inherit; padding: 3px 12px; min-width: 2.6em; cursor: pointer; }
.controls input[type=range] { flex: 1 1 240px; min-width: 160px; }
#clock { font-variant-numeric: tabular-nums; min-width: 16em; }
.legend { margin: 10px 0; color: var(--muted); font-size: 14px; }
.legend .tok { margin: 0 4px 0 14px; } .legend .tok:first-child { margin-left: 0; }
.panels { display: grid; gap: 16px; grid-template-columns: repeat(auto-fit, minmax(300px, 1fr)); margin-top: 12px; }
.panel { border: 1px solid var(--line); background: var(--panel); padding: 10px 12px; min-width: 0; }
.panel h2 { margin: 0 0 4px; font-size: 16px; overflow-wrap: anywhere; }
.settings { margin: 0 0 8px; font-size: 13px; color: var(--muted); }
.settings span { display: inline-block; margin-right: 12px; }
.settings b { color: var(--fg); font-weight: 600; }
.status { font-size: 13px; color: var(--muted); margin: 4px 0; font-variant-numeric: tabular-nums; }
.prompt { margin: 6px 0; font-size: 14px; }
.tag { display: inline-block; font-size: 11px; text-transform: uppercase; letter-spacing: .05em; color: var(--muted);
       border: 1px solid var(--line); border-radius: 3px; padding: 0 4px; margin-right: 6px; }
.canvas { white-space: pre-wrap; overflow-wrap: anywhere; word-break: break-word; line-height: 1.95;
          background: var(--bg); border: 1px solid var(--line); padding: 10px; min-height: 4.5em; }
.tok { border-radius: 2px; }
.tok.same { color: #2b2b2b; }
.tok.chg { background: var(--chg-bg); color: var(--fg); font-weight: 700; text-decoration: underline solid var(--chg-line) 2px;
           text-underline-offset: 3px; }
.tok.mask { background: var(--mask-bg); border: 1px dashed #6b6b6b; color: #555; padding: 0 2px;
            font: 0.78em ui-monospace, "DejaVu Sans Mono", "Liberation Mono", monospace; }
.tok.pin { background: var(--pin-bg); font-style: italic; text-decoration: underline double var(--pin-line);
           text-underline-offset: 3px; }
.tok.gen { border-top: 2px dotted #6b6b6b; }
"""

SCRIPT = r"""
(() => {
  "use strict";
  const D = JSON.parse(document.getElementById("elf-data").textContent);
  const T = D.timeline.length;
  const $ = (id) => document.getElementById(id);
  const slider = $("slider"), playBtn = $("play"), sampleSel = $("sample"), speedSel = $("speed"), clock = $("clock");
  const CLS = {p: "pin", m: "mask", n: "chg", ".": "same"};
  let pos = 0, sampleJ = 0, timer = null;

  slider.max = String(T - 1);
  const idx = D.panels[0].samples.map((s, j) => D.panels.map((p) => p.samples[Math.min(j, p.samples.length - 1)].index));
  idx.forEach((list, j) => {
    const o = document.createElement("option");
    o.value = String(j);
    o.textContent = "#" + Array.from(new Set(list)).join(" / #");
    sampleSel.appendChild(o);
  });

  function pct(x) { return (100 * x).toFixed(1).replace(/\.0$/, "") + "%"; }

  function sampleOf(p) { return p.samples[Math.min(sampleJ, p.samples.length - 1)]; }

  function drawTokens(el, frame) {
    const frag = document.createDocumentFragment();
    const infill = !!(frame.pin && frame.pin.length);
    for (let i = 0; i < frame.t.length; i++) {
      const piece = D.pieces[frame.t[i]];
      const m = /^(\s*)([\s\S]*)$/.exec(piece);
      if (m[1]) frag.appendChild(document.createTextNode(m[1]));  // spaces between words are never marked
      if (!m[2]) continue;
      const span = document.createElement("span");
      const kind = frame.k[i];
      span.className = "tok " + CLS[kind] + (infill && kind !== "p" ? " gen" : "");
      span.textContent = m[2];
      frag.appendChild(span);
    }
    el.replaceChildren(frag);
  }

  function drawSample() {
    D.panels.forEach((p, pi) => {
      const s = sampleOf(p);
      const box = $("prompt-" + pi);
      box.replaceChildren();
      if (s.prompt != null) {
        const tag = document.createElement("span");
        tag.className = "tag"; tag.textContent = "prompt";
        const text = document.createElement("span");
        text.className = "tok pin"; text.textContent = s.prompt;
        box.append(tag, text);
      }
      box.hidden = s.prompt == null;
    });
    show(pos);
  }

  function show(i) {
    pos = Math.max(0, Math.min(T - 1, i));
    slider.value = String(pos);
    clock.textContent = "time " + pct(D.timeline[pos]) + " of each draw · frame " + (pos + 1) + "/" + T;
    D.panels.forEach((p, pi) => {
      const s = sampleOf(p);
      const fi = s.at[pos];
      const canvas = $("canvas-" + pi), status = $("status-" + pi);
      canvas.dataset.frame = String(fi);
      if (fi < 0) {
        canvas.replaceChildren();
        canvas.dataset.step = "";
        status.textContent = "sample #" + s.index + " · not started: its first frame is at " + pct(s.frames[0].p);
        return;
      }
      const f = s.frames[fi];
      canvas.dataset.step = String(f.step);
      drawTokens(canvas, f);
      const changed = (f.k.match(/n/g) || []).length, masked = (f.k.match(/m/g) || []).length;
      status.textContent = "sample #" + s.index + " of " + p.total + " · step " + (f.step + 1) + "/" + p.steps +
        " · " + changed + " of " + f.t.length + " tokens changed" + (masked ? " · " + masked + " masked" : "");
    });
  }

  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    playBtn.textContent = "▶ Play"; playBtn.setAttribute("aria-pressed", "false");
  }
  function start() {
    if (pos >= T - 1) show(0);
    playBtn.textContent = "❚❚ Pause"; playBtn.setAttribute("aria-pressed", "true");
    timer = setInterval(() => { if (pos >= T - 1) stop(); else show(pos + 1); }, Number(speedSel.value));
  }
  function toggle() { if (timer === null) start(); else stop(); }

  playBtn.addEventListener("click", toggle);
  $("prev").addEventListener("click", () => { stop(); show(pos - 1); });
  $("next").addEventListener("click", () => { stop(); show(pos + 1); });
  slider.addEventListener("input", () => { stop(); show(Number(slider.value)); });
  sampleSel.addEventListener("change", () => { sampleJ = Number(sampleSel.value); drawSample(); });
  speedSel.addEventListener("change", () => { if (timer !== null) { stop(); start(); } });
  document.addEventListener("keydown", (e) => {
    const tag = e.target && e.target.tagName;
    if (tag === "SELECT" || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target === slider && e.key !== " ") return;  // the slider moves itself on arrows, Home and End
    if (e.key === "ArrowRight") { stop(); show(pos + 1); }
    else if (e.key === "ArrowLeft") { stop(); show(pos - 1); }
    else if (e.key === "Home") { stop(); show(0); }
    else if (e.key === "End") { stop(); show(T - 1); }
    else if (e.key === " " && tag !== "BUTTON") toggle();
    else return;
    e.preventDefault();
  });
  drawSample();
})();
"""

SPEEDS = ((400, "slow"), (160, "normal"), (60, "fast"), (20, "fastest"))


def _panel_html(i: int, panel: Panel) -> str:
    settings = "".join(f"<span>{esc(k)} <b>{esc(v)}</b></span>" for k, v in panel.settings)
    return (f'<section class="panel" id="panel-{i}"><h2>{esc(panel.path.name)}</h2>'
            f'<div class="settings">{settings}</div>'
            f'<div class="prompt" id="prompt-{i}" hidden></div>'
            f'<div class="status" id="status-{i}"></div>'
            f'<div class="canvas" id="canvas-{i}" data-frame="-1" aria-live="off"></div></section>')


def trajectory_html(panels: Sequence[Panel], title: str = "") -> str:
    """The whole page for these panels (one per samples file)."""
    data = page_data(panels)
    title = title or " vs ".join(p.path.name for p in panels)
    what = (f"{len(panels)} files side by side; " if len(panels) > 1 else "") + (
        "time runs from the first step to the last of each draw (a frame after step k of N sits at (k+1)/N), "
        "so draws of different step counts line up")
    speeds = "".join(f'<option value="{ms}"{" selected" if name == "normal" else ""}>{name}</option>'
                     for ms, name in SPEEDS)
    legend = ('<span class="tok chg">changed</span>since the previous frame'
              '<span class="tok same">unchanged</span>'
              '<span class="tok mask">[MASK]</span>masked'
              '<span class="tok pin">pinned</span>prompt or infill prefix/suffix'
              '<span class="tok gen">infilled</span>generated between pinned text')
    body = (f"<h1>{esc(title)}</h1><p class=\"sub\">{esc(what)}.</p>"
            '<div class="controls">'
            '<button id="play" type="button" aria-pressed="false" title="play / pause (space)">▶ Play</button>'
            '<button id="prev" type="button" title="previous frame (←)">◀</button>'
            f'<input id="slider" type="range" min="0" max="{max(len(data["timeline"]) - 1, 0)}" step="1" '
            'value="0" aria-label="frame">'
            '<button id="next" type="button" title="next frame (→)">▶</button>'
            '<span id="clock"></span>'
            '<label>sample <select id="sample"></select></label>'
            f'<label>speed <select id="speed">{speeds}</select></label></div>'
            f'<div class="legend">{legend}</div>'
            f'<div class="panels">{"".join(_panel_html(i, p) for i, p in enumerate(panels))}</div>'
            '<p class="note">Keys: ← → one frame, space play/pause, Home/End first/last frame.</p>'
            + json_script("elf-data", data))
    return page(title, body, css=CSS, script=SCRIPT)
