// sweep serve: keeps the running trials' loss curves of a sweep page current without a reload,
// and its effects table (each row against the baseline over seeds) as seeds finish.
// Long-polls /api/sweep/NAME/running?v=VERSION (the server answers when a trial records a row,
// starts or stops) and redraws each trial's inline SVG with the geometry of src/serve/live.rs,
// and the overlaid validation-loss chart from the lines the server computed (`overlay`).
// Ledger text is only ever set with textContent.
(function () {
  "use strict";
  var root = document.getElementById("live");
  if (!root) return;
  var api = root.getAttribute("data-api");
  var version = root.getAttribute("data-version") || "";
  var W = 600, H = 220, PAD = 34;
  var updates = 0;

  function num(v, d) {
    return typeof v === "number" && isFinite(v) ? v.toFixed(d) : "\u2014";
  }

  function scaled(train, valid) {
    var all = train.concat(valid);
    var xmax = 1, lo = Infinity, hi = -Infinity;
    all.forEach(function (p) {
      xmax = Math.max(xmax, p[0]);
      lo = Math.min(lo, p[1]);
      hi = Math.max(hi, p[1]);
    });
    if (!(isFinite(lo) && hi > lo)) {
      if (isFinite(lo)) { hi = lo + 0.5; lo = lo - 0.5; } else { lo = 0; hi = 1; }
    }
    function line(pts) {
      return pts.map(function (p) {
        var sx = PAD + p[0] / xmax * (W - 2 * PAD);
        var sy = H - PAD - (p[1] - lo) / (hi - lo) * (H - 2 * PAD);
        return sx.toFixed(1) + "," + sy.toFixed(1);
      }).join(" ");
    }
    return { train: line(train), valid: line(valid), lo: lo, hi: hi, xmax: xmax };
  }

  var SVG = "http://www.w3.org/2000/svg";
  function el(ns, name, attrs, parent) {
    var e = ns ? document.createElementNS(ns, name) : document.createElement(name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (parent) parent.appendChild(e);
    return e;
  }

  // A card for a trial that started after the page was rendered (same structure as the server's).
  function newCard(t) {
    var card = el(null, "div", { "class": "live-trial", "data-trial": String(t.id), "data-initial-points": "0" });
    var p = el(null, "p", {}, card);
    var a = el(null, "a", { href: "/trial/" + t.id }, p);
    el(null, "b", { "class": "name" }, a);
    p.appendChild(document.createTextNode(" \u00b7 step "));
    el(null, "span", { "class": "step" }, p);
    p.appendChild(document.createTextNode(" \u00b7 loss "));
    el(null, "span", { "class": "loss" }, p);
    p.appendChild(document.createTextNode(" \u00b7 "));
    el(null, "span", { "class": "tps" }, p);
    p.appendChild(document.createTextNode(" tokens/s"));
    var svg = el(SVG, "svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img" }, card);
    el(SVG, "rect", { x: 0, y: 0, width: W, height: H, fill: "#fff", stroke: "#ddd" }, svg);
    el(SVG, "polyline", { "class": "train", fill: "none", stroke: "#1f77b4", "stroke-width": 2 }, svg);
    el(SVG, "polyline", { "class": "valid", fill: "none", stroke: "#ff7f0e", "stroke-width": 2 }, svg);
    el(SVG, "text", { "class": "hi", x: 4, y: PAD - 6, "font-size": 11 }, svg);
    el(SVG, "text", { "class": "lo", x: 4, y: H - PAD + 14, "font-size": 11 }, svg);
    el(SVG, "text", { "class": "xmax", x: W - PAD, y: H - 6, "font-size": 11, "text-anchor": "end" }, svg);
    root.querySelector(".cards").appendChild(card);
    return card;
  }

  function update(t) {
    var card = root.querySelector('.live-trial[data-trial="' + t.id + '"]') || newCard(t);
    var s = scaled(t.train, t.valid);
    card.setAttribute("data-points", String(t.points));
    card.querySelector(".name").textContent = t.name;
    card.querySelector(".step").textContent = String(t.step);
    card.querySelector(".loss").textContent = num(t.loss, 4);
    card.querySelector(".tps").textContent = num(t.tokens_per_s, 0);
    card.querySelector("polyline.train").setAttribute("points", s.train);
    card.querySelector("polyline.valid").setAttribute("points", s.valid);
    card.querySelector("text.hi").textContent = s.hi.toFixed(3);
    card.querySelector("text.lo").textContent = s.lo.toFixed(3);
    card.querySelector("text.xmax").textContent = "step " + s.xmax;
  }

  // The overlaid chart: every line and legend entry rebuilt from the snapshot's `overlay`.
  function drawOverlay(o) {
    var fig = root.querySelector(".live-overlay");
    if (!fig || !o) return;
    var lines = fig.querySelector("g.lines"), legend = fig.querySelector("ul.legend");
    while (lines.firstChild) lines.removeChild(lines.firstChild);
    while (legend.firstChild) legend.removeChild(legend.firstChild);
    o.lines.forEach(function (l) {
      var id = String(l.id);
      el(SVG, "polyline", { "data-trial": id, points: l.points, fill: "none", stroke: l.colour, "stroke-width": 2 }, lines);
      el(SVG, "circle", { "data-trial": id, cx: l.last[0], cy: l.last[1], r: 3, fill: l.colour }, lines);
      var li = el(null, "li", { "data-trial": id }, legend);
      var swatch = el(SVG, "svg", { width: 14, height: 10 }, li);
      el(SVG, "rect", { width: 14, height: 10, fill: l.colour }, swatch);
      li.appendChild(document.createTextNode(" "));
      el(null, "span", { "class": "name" }, li).textContent = l.name;
    });
    fig.querySelector("text.hi").textContent = o.frame.hi.toFixed(3);
    fig.querySelector("text.lo").textContent = o.frame.lo.toFixed(3);
    fig.querySelector("text.xmax").textContent = "step " + o.frame.xmax;
    fig.setAttribute("data-lines", String(o.lines.length));
    fig.hidden = o.lines.length === 0;
  }

  var KEEP_DONE = 2;

  function apply(snap) {
    var live = {};
    snap.trials.forEach(function (t) { live[t.id] = true; update(t); });
    drawOverlay(snap.overlay);
    root.querySelectorAll(".live-trial").forEach(function (card) {
      var id = card.getAttribute("data-trial");
      if (!live[id] && !card.classList.contains("done")) {
        card.classList.add("done");
        var note = el(null, "p", { "class": "muted" }, card);
        note.textContent = "No longer running: reload the page for its final results.";
      }
    });
    // A long sweep (a search) runs many short trials: keep only the latest finished cards.
    var done = root.querySelectorAll(".live-trial.done");
    for (var i = 0; i < done.length - KEEP_DONE; i++) done[i].remove();
    var none = root.querySelector(".none");
    if (none) none.hidden = snap.trials.length > 0;
    applyEffects(snap.effects);
  }

  // The report's effects table (valid PPL against the baseline over seeds), refilled as seeds
  // finish; the forest plots below it are the page's (reload for new ones).
  function applyEffects(rows) {
    var table = document.getElementById("effects-table");
    if (!table || !rows || !rows.length) return;
    var left = table.querySelectorAll("thead th.l").length;
    var body = table.querySelector("tbody");
    while (body.firstChild) body.removeChild(body.firstChild);
    rows.forEach(function (r) {
      var tr = el(null, "tr", { "data-row": r.row }, body);
      r.cells.forEach(function (c, i) {
        el(null, "td", i < left ? { "class": "l" } : {}, tr).textContent = c;
      });
    });
    table.setAttribute("data-updates", String(updates + 1));
  }

  function poll() {
    fetch(api + "?v=" + encodeURIComponent(version), { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (snap) {
        version = snap.version;
        apply(snap);
        updates += 1;
        root.setAttribute("data-updates", String(updates));
        root.removeAttribute("data-error");
        setTimeout(poll, 1000);
      })
      .catch(function (e) {
        root.setAttribute("data-error", String(e));
        setTimeout(poll, 5000);
      });
  }
  poll();
})();
