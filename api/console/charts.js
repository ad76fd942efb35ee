// Small inline-SVG charts (line and horizontal bar) with axes, labels, a legend and a
// visually hidden data table for screen readers. No styles are set inline: colours come from
// the series-N classes in console.css, positions from SVG attributes (allowed by the CSP).

const SVG_NS = "http://www.w3.org/2000/svg";
const DEFAULT_WIDTH = 640;
const SERIES_CLASSES = 6;
const MAX_DOTS = 150;
let chartCounter = 0;

/** An SVG element `tag` with attributes `attrs`. */
function svg(tag, attrs = {}, text = null) {
  const element = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) {
    element.setAttribute(name, String(value));
  }
  if (text !== null) {
    element.textContent = text;
  }
  return element;
}

/** An HTML element `tag` with a class and text. */
function html(tag, className = null, text = null) {
  const element = document.createElement(tag);
  if (className) {
    element.className = className;
  }
  if (text !== null) {
    element.textContent = text;
  }
  return element;
}

/** About `count` round tick values covering [low, high]. */
export function niceTicks(low, high, count = 5, integer = false) {
  if (!(high > low)) {
    return [low];
  }
  const rough = (high - low) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  let step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= rough);
  if (integer) {
    step = Math.max(1, Math.ceil(step));
  }
  const ticks = [];
  for (let value = Math.ceil(low / step) * step; value <= high + step * 1e-9; value += step) {
    ticks.push(Number(value.toPrecision(12)));
  }
  return ticks;
}

/** The upper end of the y axis: the smallest nice number at or above `max`. */
function niceMax(max, integer = false) {
  if (max <= 0) {
    return 1;
  }
  const ticks = niceTicks(0, max, 4, integer);
  const last = ticks[ticks.length - 1];
  if (last >= max) {
    return last;
  }
  return last + (ticks.length > 1 ? ticks[1] - ticks[0] : max);
}

/** The figure wrapper shared by both chart kinds. */
function figure(testid, title) {
  const id = `chart-${++chartCounter}`;
  const element = html("figure", "chart");
  element.dataset.testid = testid;
  const caption = html("figcaption", "chart-title", title);
  caption.id = `${id}-title`;
  element.append(caption);
  return { element, id };
}

/** A visually hidden table with `headers` and `rows`, the text alternative of a chart. */
function dataTable(caption, headers, rows) {
  // The wrapper is hidden, not the table: tables grow to their content whatever their width.
  const wrapper = html("div", "visually-hidden");
  const table = html("table");
  wrapper.append(table);
  table.append(html("caption", null, caption));
  const head = html("thead");
  const headRow = html("tr");
  for (const header of headers) {
    const cell = html("th", null, header);
    cell.scope = "col";
    headRow.append(cell);
  }
  head.append(headRow);
  const body = html("tbody");
  for (const row of rows) {
    const tr = html("tr");
    row.forEach((value, i) => {
      const cell = html(i === 0 ? "th" : "td", null, String(value));
      if (i === 0) {
        cell.scope = "row";
      }
      tr.append(cell);
    });
    body.append(tr);
  }
  table.append(head, body);
  return wrapper;
}

/** A legend listing `names` with the swatch colour of their series. */
function legend(names) {
  const list = html("ul", "chart-legend");
  names.forEach((name, i) => {
    const item = html("li");
    item.append(html("span", `swatch series-${i % SERIES_CLASSES}`), html("span", null, name));
    list.append(item);
  });
  return list;
}

/**
 * A line chart of `series` ([{name, points: [[x, y], ...]}]) as a <figure> with an SVG, a
 * legend and a hidden data table. `formatX`/`formatY` turn values into axis labels.
 */
export function lineChart({
  testid, title, series, xLabel, yLabel, formatX = String, formatY = String,
  tableCaption, seriesHeader, emptyText, height = 280, integer = false, width = DEFAULT_WIDTH,
}) {
  const WIDTH = width;
  const { element, id } = figure(testid, title);
  const all = series.flatMap((s) => s.points);
  if (all.length === 0) {
    element.append(html("p", "chart-empty", emptyText));
    return element;
  }
  const margin = { left: 64, right: 20, top: 16, bottom: 52 };
  const plotWidth = WIDTH - margin.left - margin.right;
  const plotHeight = height - margin.top - margin.bottom;
  let xMin = Math.min(...all.map((p) => p[0]));
  let xMax = Math.max(...all.map((p) => p[0]));
  if (xMin === xMax) {
    xMin -= 1;
    xMax += 1;
  }
  const yMax = niceMax(Math.max(...all.map((p) => p[1])), integer);
  const xScale = (x) => margin.left + ((x - xMin) / (xMax - xMin)) * plotWidth;
  const yScale = (y) => margin.top + plotHeight - (y / yMax) * plotHeight;

  const root = svg("svg", {
    viewBox: `0 0 ${WIDTH} ${height}`, class: "chart-svg", role: "img",
    "aria-labelledby": `${id}-title`, preserveAspectRatio: "xMidYMid meet",
  });
  const axes = svg("g", { class: "axes" });
  for (const tick of niceTicks(0, yMax, 4, integer)) {
    const y = yScale(tick);
    axes.append(
      svg("line", { x1: margin.left, x2: WIDTH - margin.right, y1: y, y2: y, class: "grid" }),
      svg("text", { x: margin.left - 8, y: y + 4, "text-anchor": "end", class: "tick" },
        formatY(tick)),
    );
  }
  const xTicks = WIDTH < 480 ? 2 : 4;
  for (let i = 0; i <= xTicks; i++) {
    const value = xMin + ((xMax - xMin) * i) / xTicks;
    const x = xScale(value);
    const anchor = i === 0 ? "start" : i === xTicks ? "end" : "middle";
    axes.append(
      svg("line", { x1: x, x2: x, y1: margin.top + plotHeight, y2: margin.top + plotHeight + 5,
        class: "axis" }),
      svg("text", { x, y: margin.top + plotHeight + 20, "text-anchor": anchor, class: "tick" },
        formatX(value)),
    );
  }
  axes.append(
    svg("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotHeight,
      class: "axis" }),
    svg("line", { x1: margin.left, x2: WIDTH - margin.right, y1: margin.top + plotHeight,
      y2: margin.top + plotHeight, class: "axis" }),
    svg("text", { x: margin.left + plotWidth / 2, y: height - 8, "text-anchor": "middle",
      class: "axis-label" }, xLabel),
    svg("text", { x: 14, y: margin.top + plotHeight / 2, "text-anchor": "middle",
      transform: `rotate(-90 14 ${margin.top + plotHeight / 2})`, class: "axis-label" }, yLabel),
  );
  root.append(axes);

  series.forEach((s, i) => {
    if (s.points.length === 0) {
      return;
    }
    const colour = `series-${i % SERIES_CLASSES}`;
    const group = svg("g", { class: `series ${colour}` });
    const d = s.points
      .map((p, j) => `${j === 0 ? "M" : "L"}${xScale(p[0]).toFixed(1)},${yScale(p[1]).toFixed(1)}`)
      .join(" ");
    group.append(svg("path", { d, class: "series-line", fill: "none" }));
    // Dots (with their tooltips) only where they stay apart; the data table has every point.
    const dots = s.points.length <= MAX_DOTS ? s.points : [];
    for (const p of dots) {
      const dot = svg("circle", { cx: xScale(p[0]).toFixed(1), cy: yScale(p[1]).toFixed(1), r: 3,
        class: "series-dot" });
      dot.append(svg("title", {}, `${s.name}: ${formatX(p[0])}, ${formatY(p[1])}`));
      group.append(dot);
    }
    root.append(group);
  });
  element.append(root, legend(series.map((s) => s.name)));
  const rows = series.flatMap((s) => s.points.map((p) => [s.name, formatX(p[0]), formatY(p[1])]));
  element.append(dataTable(tableCaption, [seriesHeader, xLabel, yLabel], rows));
  return element;
}

/**
 * A horizontal bar chart of `bars` ([{label, value}]) as a <figure> with a value axis, each
 * category label above its bar (long rule names stay readable on narrow screens), and a table.
 */
export function barChart({
  testid, title, bars, valueLabel, categoryLabel, tableCaption, emptyText,
  formatValue = String, width = DEFAULT_WIDTH,
}) {
  const { element, id } = figure(testid, title);
  if (bars.length === 0) {
    element.append(html("p", "chart-empty", emptyText));
    return element;
  }
  const labelHeight = 18;
  const barHeight = 22;
  const gap = 12;
  const row = labelHeight + barHeight + gap;
  const margin = { left: 12, right: 56, top: 8, bottom: 48 };
  const plotWidth = width - margin.left - margin.right;
  const plotHeight = bars.length * row;
  const height = margin.top + plotHeight + margin.bottom;
  const max = niceMax(Math.max(...bars.map((b) => b.value)), true);
  const xScale = (v) => margin.left + (v / max) * plotWidth;

  const root = svg("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "chart-svg", role: "img",
    "aria-labelledby": `${id}-title`, preserveAspectRatio: "xMidYMid meet",
  });
  const axes = svg("g", { class: "axes" });
  for (const tick of niceTicks(0, max, 4, true)) {
    const x = xScale(tick);
    axes.append(
      svg("line", { x1: x, x2: x, y1: margin.top, y2: margin.top + plotHeight, class: "grid" }),
      svg("text", { x, y: margin.top + plotHeight + 18, "text-anchor": "middle", class: "tick" },
        formatValue(tick)),
    );
  }
  axes.append(
    svg("line", { x1: margin.left, x2: width - margin.right, y1: margin.top + plotHeight,
      y2: margin.top + plotHeight, class: "axis" }),
    svg("text", { x: margin.left + plotWidth / 2, y: height - 8, "text-anchor": "middle",
      class: "axis-label" }, valueLabel),
  );
  root.append(axes);
  bars.forEach((bar, i) => {
    const top = margin.top + i * row;
    const y = top + labelHeight;
    const group = svg("g", { class: `series series-${i % SERIES_CLASSES}` });
    const rect = svg("rect", { x: margin.left, y, width: Math.max(1, xScale(bar.value) - margin.left),
      height: barHeight, class: "series-bar" });
    rect.append(svg("title", {}, `${bar.label}: ${formatValue(bar.value)}`));
    group.append(
      svg("text", { x: margin.left, y: top + labelHeight - 5, class: "bar-label" }, bar.label),
      rect,
      svg("text", { x: xScale(bar.value) + 6, y: y + barHeight / 2 + 5, class: "bar-value" },
        formatValue(bar.value)),
    );
    root.append(group);
  });
  element.append(root);
  element.append(dataTable(tableCaption, [categoryLabel, valueLabel],
    bars.map((b) => [b.label, formatValue(b.value)])));
  return element;
}
