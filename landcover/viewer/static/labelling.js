// Labelling the assessment sample in landcover-view (docs/viewer.md, "Labelling the assessment sample").
//
// The page (viewer.js) loads this script when /api/config says `labelling: true`, once window.landcoverViewer
// ({map, config, panel}) is set and the map's layers are added; the script then calls startLabelling on it. It is
// a classic script, as viewer.js is, so all but window.startLabelling stays inside its own function. The server
// holds the sample: GET /api/labelling gives its classes, its points in the design's order with their answers, the
// counts and where to resume; POST /api/labelling/answer records one answer in the sample's CSV at once. The page
// keeps no answer of its own: what it shows is what the server said it wrote.
//
// Keys: 1-9 the reference class of that number in the list; 0 or c: can't tell; Backspace or Delete: clear the
// answer; arrow left or [: back; arrow right or ]: forward; / or f: search the classes (Enter records the first
// match, Escape leaves the search). An answer moves on to the next point without one.

(() => {
"use strict";

const KEYED_CLASSES = 9; // keys 1-9
const POINT_ZOOM = 18; // close enough to see a 0.5 m pixel, as far as the map allows
// The layers that show the map class: switched off unless --show-map-class, by their own switches in the layer list
const MAP_CLASS_KINDS = ["classes", "change"];
// Keys typed into a text field are text; on a slider or a checkbox (the layer list's) they are labelling keys.
const TEXT_INPUTS = ["text", "search", "number", "email", "url", "password", "tel"];
const KEYS_HELP = "keys: 1-9 class · 0 or c can't tell · ← → or [ ] move · Backspace clear · / search";

const STYLE = `
#labelling.floating { position: absolute; top: 10px; right: 10px; z-index: 10; width: 290px;
  max-height: calc(100% - 20px); overflow-y: auto; background: rgba(255, 255, 255, 0.95); border-radius: 6px;
  padding: 10px 12px; box-shadow: 0 1px 6px rgba(0, 0, 0, 0.35); }
#labelling progress { width: 100%; height: 12px; }
#labelling .row { display: flex; gap: 6px; align-items: center; margin: 6px 0; }
#labelling .row button { flex: 1; }
#labelling ol { list-style: none; margin: 6px 0; padding: 0; }
#labelling li { display: flex; gap: 6px; align-items: center; padding: 2px 4px; border-radius: 4px; cursor: pointer; }
#labelling li:hover, #labelling li.chosen { background: #dde8ff; }
#labelling li[hidden] { display: none; }
#labelling kbd { display: inline-block; min-width: 1.2em; text-align: center; border: 1px solid #999;
  border-radius: 3px; font-size: 11px; padding: 0 2px; }
#labelling .swatch { width: 14px; height: 14px; border: 1px solid #333; flex: none; }
#labelling .swatch.cannot-tell { background: repeating-linear-gradient(45deg, #bbb 0 3px, #fff 3px 6px); }
#labelling input[type=search] { width: 100%; box-sizing: border-box; }
#labelling .error { color: #b00020; }
#labelling .done { color: #006400; font-weight: bold; }
#labelling .keys { color: #666; margin-top: 6px; }
.labelling-marker { width: 28px; height: 28px; border: 3px solid #ff2d2d; border-radius: 50%;
  box-shadow: 0 0 0 2px #fff; box-sizing: border-box; pointer-events: none; }
`;

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

async function request(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

function hideMapClass(viewer) {
  for (const layer of viewer.config.layers) {
    const toggle = document.getElementById(`show-${layer.id}`);
    if (MAP_CLASS_KINDS.includes(layer.kind) && toggle && toggle.checked) {
      toggle.checked = false;
      toggle.dispatchEvent(new Event("change"));
    }
  }
  const pixel = document.getElementById("pixel"); // a click would tell the map class
  if (pixel) pixel.hidden = true;
}

function typing(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable || target.tagName === "TEXTAREA" || target.tagName === "SELECT") return true;
  return target.tagName === "INPUT" && TEXT_INPUTS.includes(target.type);
}

function classItem(reference, key, swatch, label) {
  return element("li", { "data-reference": reference, title: `record ${label}` },
    element("kbd", { text: key }), swatch, element("span", { text: label }));
}

function button(id, text, title) {
  return element("button", { id, type: "button", text, title });
}

async function startLabelling(viewer) {
  const { map } = viewer;
  const state = await request("/api/labelling");
  const cannotTell = state.cannot_tell_reference;
  document.head.append(element("style", { text: STYLE }));
  if (!state.show_map_class) hideMapClass(viewer); // hiding it avoids bias

  // --- the panel: the page's own section for it, or a box over the map ---
  const progress = element("progress", { id: "labelling-progress", max: String(state.total), value: "0" });
  const counts = element("div", { id: "labelling-counts" });
  const pointLine = element("div", { id: "labelling-point" });
  const mapClassLine = element("div", { id: "labelling-map-class" });
  const answerLine = element("div", { id: "labelling-answer" });
  const message = element("div", { id: "labelling-message", role: "status" });
  const search = element("input", {
    id: "labelling-search", type: "search", placeholder: "search classes ( / )", autocomplete: "off",
  });
  const items = state.classes.map((cls, index) =>
    classItem(cls.name, index < KEYED_CLASSES ? String(index + 1) : "",
      element("span", { class: "swatch", style: `background: ${cls.colour}` }), cls.name));
  const cannotTellItem = classItem(cannotTell, "0", element("span", { class: "swatch cannot-tell" }), "can't tell (c)");
  for (const item of [...items, cannotTellItem]) item.addEventListener("click", () => answer(item.dataset.reference));
  const back = button("labelling-back", "◀ back", "previous point (← or [)");
  const clear = button("labelling-clear", "clear", "clear this point's answer (Backspace)");
  const forward = button("labelling-forward", "forward ▶", "next point (→ or ])");
  back.addEventListener("click", () => go(index - 1));
  forward.addEventListener("click", () => go(index + 1));
  clear.addEventListener("click", () => answer(""));

  let panel = viewer.panel || document.getElementById("labelling");
  if (!panel) {
    panel = element("section", { id: "labelling", class: "floating" });
    (map.getContainer().parentElement || document.body).append(panel);
  }
  panel.setAttribute("aria-label", "labelling the sample");
  panel.replaceChildren(
    element("h2", { text: "Label the sample" }), progress, counts, pointLine, mapClassLine, answerLine,
    element("div", { class: "row" }, back, clear, forward), search,
    element("ol", { id: "labelling-classes" }, ...items, cannotTellItem), message,
    element("div", { class: "keys", text: KEYS_HELP }));
  panel.hidden = false;
  const layers = document.getElementById("layers"); // first in the side panel: it is what the labeller works with
  if (layers && layers.parentElement === panel.parentElement) panel.parentElement.insertBefore(panel, layers);

  const marker = new maplibregl.Marker({ element: element("div", { class: "labelling-marker" }) });
  let index = 0;

  function show() {
    const point = state.points[index];
    progress.value = state.answered;
    counts.textContent =
      `${state.answered} / ${state.total} answered · ${state.labelled} labelled · ${state.cannot_tell} can't tell`;
    pointLine.textContent = `point ${index + 1} of ${state.total} (id ${point.id}) · ` +
      `lat ${point.lat.toFixed(6)}, lon ${point.lon.toFixed(6)}`;
    mapClassLine.textContent = state.show_map_class ? `map class: ${point.map_class}` : "";
    const said = point.reference === cannotTell ? "can't tell" : point.reference;
    answerLine.textContent = `answer: ${said || "none yet"}`;
    for (const item of [...items, cannotTellItem]) {
      item.classList.toggle("chosen", item.dataset.reference === point.reference);
    }
    Object.assign(panel.dataset, { index: String(index), pointId: String(point.id), answered: String(state.answered) });
    back.disabled = index === 0;
    forward.disabled = index === state.total - 1;
    if (state.resume === null) {
      message.className = "done";
      message.textContent = "every point has an answer: run landcover-assess on the sample's CSV";
    }
  }

  function go(target) {
    if (target < 0 || target >= state.total) return;
    index = target;
    const point = state.points[index];
    marker.setLngLat([point.lon, point.lat]).addTo(map);
    map.flyTo({ center: [point.lon, point.lat], zoom: Math.min(POINT_ZOOM, map.getMaxZoom()), speed: 2 });
    show();
  }

  let pending = Promise.resolve();
  function answer(reference) {
    // one answer at a time, in the order given: a fast labeller's keys are never reordered
    pending = pending.then(async () => {
      const point = state.points[index];
      try {
        const result = await request("/api/labelling/answer", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ point_id: point.id, reference }),
        });
        state.points[result.index].reference = result.point.reference;
        for (const key of ["answered", "labelled", "cannot_tell", "resume"]) state[key] = result[key];
        message.className = "";
        const said = reference === cannotTell ? "can't tell" : reference || "cleared";
        message.textContent = `point ${point.id}: ${said}, saved`;
        if (reference && result.next !== null) go(result.next);
        else show();
      } catch (error) {
        message.className = "error";
        message.textContent = `not saved: ${error.message}`;
      }
    });
    return pending;
  }

  function filterClasses() {
    const words = search.value.trim().toLowerCase();
    for (const item of items) item.hidden = words !== "" && !item.dataset.reference.toLowerCase().includes(words);
  }
  function leaveSearch() {
    search.value = "";
    filterClasses();
    search.blur();
  }
  search.addEventListener("input", filterClasses);
  search.addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      const first = items.find((item) => !item.hidden);
      if (first) answer(first.dataset.reference);
      leaveSearch();
      event.preventDefault();
    } else if (event.key === "Escape") {
      leaveSearch();
    }
  });

  // On the document, before anything else sees the key: the map's own arrow-key panning stays out of it.
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    const key = event.key;
    const number = /^[1-9]$/.test(key) ? Number(key) : 0;
    if (number && number <= Math.min(KEYED_CLASSES, state.classes.length)) answer(state.classes[number - 1].name);
    else if (key === "0" || key === "c") answer(cannotTell);
    else if (key === "Backspace" || key === "Delete") answer("");
    else if (key === "ArrowLeft" || key === "[") go(index - 1);
    else if (key === "ArrowRight" || key === "]") go(index + 1);
    else if (key === "/" || key === "f") search.focus();
    else return;
    event.preventDefault();
    event.stopPropagation();
  }, { capture: true });

  go(state.resume === null ? 0 : state.resume);
  viewer.labelling = { state, answer, go, current: () => index };
  return viewer.labelling;
}

window.startLabelling = startLabelling;
if (window.landcoverViewer) {
  startLabelling(window.landcoverViewer).catch((error) => {
    const panel = window.landcoverViewer.panel || document.body;
    panel.hidden = false;
    panel.append(element("p", { class: "error", text: `labelling: ${error.message}` }));
  });
}
})();
