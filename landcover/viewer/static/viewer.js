// The page of landcover-view: the output's layers on a MapLibre map, their legends, the area tables, scene outlines,
// a click's pixel values, and for a change the two dates side by side under a swipe. Everything it shows comes from
// the server's /api/config; tiles from /tiles/. It exposes window.landcoverViewer = {map, config, panel} (panel: the
// labelling mode's section) and, when config.labelling is true, loads /static/labelling.js.
"use strict";

const SCENE_COLOURS = { done: "#1a9850", resumed: "#2c7bb6", failed: "#d73027" };

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function swatch(colour) {
  const box = element("span", { class: "swatch" });
  box.style.background = colour;
  return box;
}

function rasterStyle(layer, visible) {
  return {
    id: layer.id,
    type: "raster",
    source: layer.id,
    layout: { visibility: visible ? "visible" : "none" },
    paint: {
      "raster-fade-duration": 0,
      "raster-resampling": layer.kind === "imagery" ? "linear" : "nearest",
    },
  };
}

function rasterSource(layer) {
  return {
    type: "raster",
    tiles: [new URL(layer.tiles, location.href).href.replace(/%7B/g, "{").replace(/%7D/g, "}")],
    tileSize: 256,
    bounds: layer.bounds,
    minzoom: layer.minzoom,
    maxzoom: layer.maxzoom,
  };
}

function newMap(container, bounds, interactive) {
  return new maplibregl.Map({
    container,
    style: {
      version: 8,
      sources: {},
      layers: [{ id: "background", type: "background", paint: { "background-color": "#ecece6" } }],
    },
    bounds,
    fitBoundsOptions: { padding: 24 },
    interactive,
    attributionControl: false,
    canvasContextAttributes: { preserveDrawingBuffer: true },
  });
}

function layerControls(config, mapOf) {
  const list = document.getElementById("layer-list");
  for (const layer of config.layers) {
    const map = mapOf(layer.id);
    const toggle = element("input", { type: "checkbox", id: `show-${layer.id}`, ...(layer.visible ? { checked: "" } : {}) });
    toggle.addEventListener("change", () => {
      document.body.dataset.idle = "false"; // until the map that holds the layer has drawn it
      map.once("idle", () => { document.body.dataset.idle = "true"; });
      map.setLayoutProperty(layer.id, "visibility", toggle.checked ? "visible" : "none");
    });
    const opacity = element("input", {
      type: "range", min: "0", max: "1", step: "0.05", value: "1", id: `opacity-${layer.id}`,
      "aria-label": `${layer.title} opacity`, title: "opacity",
    });
    opacity.addEventListener("input", () => map.setPaintProperty(layer.id, "raster-opacity", Number(opacity.value)));
    list.append(element("li", {}, toggle, element("label", { for: `show-${layer.id}` }, layer.title), opacity));
  }
}

function legends(config) {
  const section = document.getElementById("legends");
  for (const layer of config.layers) {
    if (layer.legend) {
      const items = layer.legend.map((entry) =>
        element("li", { "data-value": String(entry.value) }, swatch(entry.colour), entry.name));
      section.append(element("h2", {}, `Legend: ${layer.title}`), element("ul", { class: "legend", id: `legend-${layer.id}` }, ...items));
    } else if (layer.kind === "confidence") {
      const ramp = element("div", { class: "ramp" });
      ramp.style.background = `linear-gradient(to right, ${config.confidence_ramp.colours.join(", ")})`;
      section.append(element("h2", {}, `Legend: ${layer.title}`), ramp,
        element("div", { class: "ramp-labels" }, element("span", {}, "0"), element("span", {}, "max class probability"), element("span", {}, "1")));
    }
  }
  if (config.scenes.features.length) {
    const items = Object.entries(SCENE_COLOURS).map(([status, colour]) => element("li", {}, swatch(colour), status));
    section.append(element("h2", {}, "Scene outlines"), element("ul", { class: "legend", id: "legend-scenes" }, ...items));
  }
}

function formatValue(value, unit) {
  if (value === null || value === undefined) return "";
  return unit === "ha" ? `${value.toFixed(2)} ha` : `${value} px`;
}

function areaTables(config) {
  const section = document.getElementById("areas");
  for (const table of config.areas) {
    const rows = table.rows.map((row) =>
      element("tr", {}, element("td", {}, swatch(row.colour || "transparent")), element("td", {}, row.name),
        element("td", { class: "value" }, formatValue(row.value, table.unit))));
    section.append(element("h2", {}, `Areas: ${table.title}`), element("table", { class: "areas" }, ...rows));
  }
}

function sceneOutlines(map, config) {
  if (!config.scenes.features.length) return;
  map.addSource("scenes", { type: "geojson", data: config.scenes });
  const colour = ["match", ["get", "status"], ...Object.entries(SCENE_COLOURS).flat(), "#777777"];
  map.addLayer({ id: "scene-areas", type: "fill", source: "scenes", paint: { "fill-color": colour, "fill-opacity": 0 } });
  map.addLayer({ id: "scene-outlines", type: "line", source: "scenes", paint: { "line-color": colour, "line-width": 2 } });
  const popup = new maplibregl.Popup({ closeButton: false, closeOnClick: false, className: "scene-popup" });
  map.on("mousemove", "scene-areas", (event) => {
    const scene = event.features[0].properties;
    const text = `${scene.scene}: ${scene.status}${scene.error ? ` (${scene.error})` : ""}`;
    popup.setLngLat(event.lngLat).setText(text).addTo(map);
  });
  map.on("mouseleave", "scene-areas", () => popup.remove());
}

let clicked = null;  // the marker of the pixel shown

async function showPixel(map, lngLat) {
  clicked = clicked || new maplibregl.Marker({ color: "#e4002b", scale: 0.6 });
  clicked.setLngLat(lngLat).addTo(map);
  const info = document.getElementById("pixel-info");
  const reply = await fetch(`/api/point?lon=${lngLat.lng}&lat=${lngLat.lat}`);
  const point = await reply.json();
  if (!reply.ok) {  // a map unreadable since the start: the server's one line
    info.replaceChildren(element("div", { class: "error" }, `not read: ${point.error}`));
    return;
  }
  const lines = point.values.map((entry) => {
    let text = "no data";
    if (entry.value !== null) {
      text = entry.kind === "confidence" ? entry.confidence.toFixed(3) : `${entry.name} (${entry.value})`;
    }
    return element("div", { "data-layer": entry.layer }, `${entry.title}: ${text}`);
  });
  lines.push(element("div", { class: "coordinates" }, `lon ${point.lon.toFixed(6)}, lat ${point.lat.toFixed(6)}`));
  info.replaceChildren(...lines);
}

function swipe(map, config) {
  // the second date on a map of its own over the first, cut at the slider: left of it date 1, right of it date 2
  const container = document.getElementById("map-after");
  const slider = document.getElementById("swipe");
  container.hidden = false;
  slider.hidden = false;
  container.style.pointerEvents = "none";
  const after = newMap(container, config.bounds, false);
  const follow = () => after.jumpTo({ center: map.getCenter(), zoom: map.getZoom(), bearing: map.getBearing(), pitch: map.getPitch() });
  map.on("move", follow);
  const cut = () => { container.style.clipPath = `inset(0 0 0 ${slider.value}%)`; };
  slider.addEventListener("input", cut);
  cut();
  return after;
}

async function start() {
  const config = await (await fetch("/api/config")).json();
  document.title = `landcover-view: ${config.title}`;
  document.getElementById("title").textContent = config.title;
  document.getElementById("command").textContent = `an output of ${config.command}`;
  const map = newMap("map", config.bounds, true);
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  map.addControl(new maplibregl.ScaleControl());
  const afterIds = config.swipe ? config.swipe.after : []; // date 2's layers: on the map right of the swipe
  const after = config.swipe ? swipe(map, config) : null;
  const mapOf = (id) => (afterIds.includes(id) ? after : map);
  window.landcoverViewer = { map, config, panel: document.getElementById("labelling") };

  const loaded = [new Promise((resolve) => map.on("load", resolve))];
  if (after) loaded.push(new Promise((resolve) => after.on("load", resolve)));
  await Promise.all(loaded);
  for (const layer of config.layers) {
    mapOf(layer.id).addSource(layer.id, rasterSource(layer));
    mapOf(layer.id).addLayer(rasterStyle(layer, layer.visible));
  }
  sceneOutlines(map, config);
  layerControls(config, mapOf);
  legends(config);
  areaTables(config);
  map.on("click", (event) => showPixel(map, event.lngLat));
  map.on("idle", () => { document.body.dataset.idle = "true"; });
  map.on("movestart", () => { document.body.dataset.idle = "false"; });
  if (config.labelling) {
    document.getElementById("labelling").hidden = false;
    document.body.append(element("script", { src: "/static/labelling.js" }));
  }
}

start();
