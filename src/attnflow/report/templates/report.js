/* attnflow report: draws the embedded data with plain DOM calls.
 * Everything that comes from the data (tokens, names, labels) is inserted with
 * textContent or setAttribute on non-URL attributes, never as markup. */
(function () {
  "use strict";

  var D = JSON.parse(document.getElementById("attnflow-data").textContent);
  var SVGNS = document.getElementById("graph").namespaceURI;
  var METHOD_COLOURS = { raw: "#64748b", rollout: "#4f46e5", flow: "#db2777" };
  var EXTRA_COLOURS = ["#059669", "#d97706", "#0891b2", "#7c3aed", "#be123c"];
  var RAMP = [[248, 250, 252], [224, 231, 255], [165, 180, 252], [99, 102, 241], [67, 56, 202], [30, 27, 105]];
  var SHARE_RAMP = [[255, 247, 237], [254, 215, 170], [251, 146, 60], [234, 88, 12], [154, 52, 18]];

  var n = D.tokens.length;
  var L = D.n_layers || 0;
  var methods = Object.keys(D.scores || {});
  var special = {};
  (D.special_positions || []).forEach(function (p) { special[p] = true; });
  // a generated answer: tokens from prompt_length on are the answer (marked); words: pieces summed in Python
  var promptLength = typeof D.prompt_length === "number" ? D.prompt_length : null;
  function isAnswer(j) { return promptLength !== null && j >= promptLength; }
  // an encoder-decoder model: tokens before source_length are the source, the rest the decoder positions;
  // layer_names name the layers of its layered graph (encoder layers, then each decoder layer's sublayers)
  var sourceLength = typeof D.source_length === "number" ? D.source_length : null;
  function isTarget(j) { return sourceLength !== null && j >= sourceLength; }
  function sideOf(j) { return sourceLength === null ? "" : (isTarget(j) ? "\n(target)" : "\n(source)"); }
  function layerName(l) { return D.layer_names && D.layer_names[l - 1] ? D.layer_names[l - 1] : "layer " + l; }
  function layerOf(l) { return (D.layer_names ? layerName(l) + ", graph layer " : "layer ") + l + " of " + L; }
  function isCross(l, i, j) { return sourceLength !== null && j < sourceLength && i >= sourceLength; }

  var state = {
    k: Math.max(0, indexOfOutput(D.output)),
    layer: D.layer || L,
    graphMethod: null,
    threshold: 0.08,
    scale: "layer",
    ignoreSpecial: true,
    cutSource: -1
  };

  // ------------------------------------------------------------------ small helpers

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    setAttrs(e, attrs);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function sv(tag, attrs, text) {
    var e = document.createElementNS(SVGNS, tag);
    setAttrs(e, attrs);
    if (text !== undefined && text !== null) { e.textContent = String(text); }
    return e;
  }

  function setAttrs(e, attrs) {
    if (!attrs) { return; }
    Object.keys(attrs).forEach(function (key) {
      if (attrs[key] !== undefined && attrs[key] !== null) { e.setAttribute(key, String(attrs[key])); }
    });
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function byId(id) { return document.getElementById(id); }

  function indexOfOutput(key) {
    for (var i = 0; i < D.outputs.length; i++) {
      if (String(D.outputs[i]) === String(key)) { return i; }
    }
    return -1;
  }

  function methodColour(name) {
    if (METHOD_COLOURS[name]) { return METHOD_COLOURS[name]; }
    var others = methods.filter(function (m) { return !METHOD_COLOURS[m]; });
    return EXTRA_COLOURS[Math.max(0, others.indexOf(name)) % EXTRA_COLOURS.length];
  }

  function interpolate(stops, t) {
    t = Math.max(0, Math.min(1, isFinite(t) ? t : 0));
    var x = t * (stops.length - 1);
    var i = Math.min(stops.length - 2, Math.floor(x));
    var f = x - i;
    var a = stops[i], b = stops[i + 1];
    return "rgb(" + [0, 1, 2].map(function (c) { return Math.round(a[c] + (b[c] - a[c]) * f); }).join(",") + ")";
  }

  function ramp(t) { return interpolate(RAMP, t); }
  function inkOn(t) { return t > 0.55 ? "#ffffff" : "#1e2230"; }

  function fmt(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) { return "–"; }
    return Number(v).toFixed(digits === undefined ? 3 : digits);
  }

  // A token as people read it: byte-level BPE's and SentencePiece's word marks (\u0120, \u2581) dropped, a newline
  // piece (\u010a) as a return sign, a piece that is only a mark as an open box; the data keeps the pieces as they are
  function displayToken(t) {
    var shown = String(t).replace(/^[\u0120\u2581]+/, "").replace(/\u010a/g, "\u21b5");
    return shown === "" && t !== "" ? "\u2423" : shown;
  }
  var NAMES = D.tokens.map(displayToken);

  function tokenName(i) { return NAMES[i]; }

  function outputKey() { return D.outputs[state.k]; }

  function outputLabel(key) {
    if (key === "mean") { return "the mean of all positions"; }
    if (key === "answer") { return "the generated answer (the mean over its tokens, each at the position that predicted it)"; }
    if (promptLength !== null && key >= promptLength - 1 && key + 1 < n) {
      return "token " + key + " \u201c" + tokenName(key) + "\u201d, which predicted the answer token " + (key + 1) +
        " \u201c" + tokenName(key + 1) + "\u201d";
    }
    return "token " + key + " \u201c" + tokenName(key) + "\u201d";
  }

  function scoresRow(method, layer, k) {
    var m = D.scores[method];
    if (!m) { return null; }
    var row = m[layer - 1][k];
    for (var j = 0; j < row.length; j++) { if (row[j] !== null) { return row; } }
    return null;
  }

  function rowMax(row) {
    return rowRange(row)[1];
  }

  function rowRange(row) {
    // [min, max] over the row, special tokens left out when asked (unless nothing else is left)
    var lo = Infinity, hi = -Infinity, j;
    if (!row) { return [0, 0]; }
    for (j = 0; j < row.length; j++) {
      if (row[j] === null || (state.ignoreSpecial && special[j])) { continue; }
      lo = Math.min(lo, row[j]); hi = Math.max(hi, row[j]);
    }
    if (hi === -Infinity) {
      for (j = 0; j < row.length; j++) {
        if (row[j] !== null) { lo = Math.min(lo, row[j]); hi = Math.max(hi, row[j]); }
      }
    }
    return hi === -Infinity ? [0, 0] : [lo, hi];
  }

  function mapMax(method, k) {
    var top = 0;
    for (var l = 1; l <= L; l++) { top = Math.max(top, rowMax(scoresRow(method, l, k))); }
    return top;
  }

  function scaler(method, row) {
    // value -> [0, 1] for the colour ramp, by the chosen colour scale
    var lo = 0, hi;
    if (state.scale === "map") {
      hi = mapMax(method, state.k);
    } else if (state.scale === "range") {
      var range = rowRange(row);
      lo = range[0]; hi = range[1];
    } else {
      hi = rowMax(row);
    }
    return function (v) {
      if (v === null || !(hi > lo)) { return 0; }
      return Math.max(0, Math.min(1, (v - lo) / (hi - lo)));
    };
  }

  // ------------------------------------------------------------------ tooltip

  var tip = byId("tooltip");
  document.addEventListener("mousemove", function (event) {
    var target = event.target && event.target.closest ? event.target.closest("[data-tip]") : null;
    if (!target) { tip.hidden = true; return; }
    tip.textContent = target.getAttribute("data-tip");
    tip.hidden = false;
    var x = event.clientX + 14, y = event.clientY + 14;
    var w = tip.offsetWidth, h = tip.offsetHeight;
    if (x + w > window.innerWidth - 8) { x = event.clientX - w - 14; }
    if (y + h > window.innerHeight - 8) { y = event.clientY - h - 14; }
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  });
  document.addEventListener("mouseleave", function () { tip.hidden = true; });

  // ------------------------------------------------------------------ header, notes, footer

  function renderHeader() {
    var meta = byId("meta");
    var items = [];
    if (D.model) { items.push(["model", D.model]); }
    if (L && D.layer_names) {  // an encoder-decoder model: its own layers, not the layered graph's
      var encoder = D.layer_names.filter(function (name) { return name.indexOf("enc ") === 0; }).length;
      var decoder = D.layer_names.filter(function (name) { return / cross$/.test(name); }).length;
      items.push(["layers", encoder + " encoder + " + decoder + " decoder"]);
    } else if (L) { items.push(["layers", String(L)]); }
    if (D.n_heads) { items.push(["heads", String(D.n_heads)]); }
    if (n) { items.push(["tokens", String(n)]); }
    if (methods.length) { items.push(["methods", methods.join(", ")]); }
    if (D.attention) {
      var r = D.run_residual !== null && D.run_residual !== undefined ? D.run_residual : D.residual;
      items.push(["residual", String(r)]); items.push(["head fusion", D.head_fusion]);
    }
    if (D.is_causal) { items.push(["", "decoder (causal)"]); }
    if (D.evaluation) {
      if (D.evaluation.target) { items.push(["target", D.evaluation.target]); }
      if (D.evaluation.n_examples !== null && D.evaluation.n_examples !== undefined) {
        items.push(["examples", String(D.evaluation.n_examples)]);
      }
    }
    items.forEach(function (item) {
      var chip = el("span", { "class": "chip" });
      if (item[0]) { chip.appendChild(el("span", null, item[0] + " ")); }
      chip.appendChild(el("b", null, item[1]));
      meta.appendChild(chip);
    });
    var notes = byId("notes");
    (D.notes || []).forEach(function (text) { notes.appendChild(el("p", { "class": "note" }, text)); });
    byId("footer").textContent = "Made by " + D.generator + (D.source ? " from " + D.source : "") +
      ". Self-contained: no network access, no external scripts, fonts or images.";
  }

  // ------------------------------------------------------------------ controls

  function setupControls() {
    if (!n || !methods.length) { return; }
    byId("controls").hidden = false;
    var select = byId("output-select");
    D.outputs.forEach(function (key, k) {
      var label = key === "mean" ? "mean of all positions" : key === "answer" ? "the answer (span mean)" :
        "#" + key + "  " + tokenName(key);
      select.appendChild(el("option", { value: String(k) }, label));
    });
    select.value = String(state.k);
    select.disabled = D.outputs.length < 2;
    select.addEventListener("change", function () { setOutput(Number(select.value)); });

    var range = byId("layer-range");
    range.max = String(L);
    range.value = String(state.layer);
    range.addEventListener("input", function () { setLayer(Number(range.value)); });
    range.addEventListener("change", function () { setLayer(Number(range.value)); });
    byId("layer-down").addEventListener("click", function () { setLayer(state.layer - 1); });
    byId("layer-up").addEventListener("click", function () { setLayer(state.layer + 1); });

    byId("scale-select").addEventListener("change", function (event) {
      state.scale = event.target.value; update();
    });
    byId("special-check").addEventListener("change", function (event) {
      state.ignoreSpecial = event.target.checked; update();
    });

    var graphMethod = byId("graph-method");
    methods.forEach(function (m) { graphMethod.appendChild(el("option", { value: m }, m + " scores")); });
    state.graphMethod = methods.indexOf("flow") >= 0 ? "flow" : (methods.indexOf("rollout") >= 0 ? "rollout" : methods[0]);
    graphMethod.value = state.graphMethod;
    graphMethod.addEventListener("change", function () { state.graphMethod = graphMethod.value; renderGraph(); });
    var threshold = byId("threshold-range");
    threshold.addEventListener("input", function () { state.threshold = Number(threshold.value); renderGraph(); });
    if (D.flow_cuts && D.attention) {
      byId("cut-control").hidden = false;
      var cutSelect = byId("cut-select");
      cutSelect.appendChild(el("option", { value: "-1" }, "no token"));
      NAMES.forEach(function (token, j) { cutSelect.appendChild(el("option", { value: String(j) }, "#" + j + "  " + token)); });
      cutSelect.addEventListener("change", function () { setCutSource(Number(cutSelect.value)); });
    }
  }

  function setCutSource(j) {
    state.cutSource = j;
    var cutSelect = byId("cut-select");
    if (cutSelect) { cutSelect.value = String(j); }
    renderGraph();
  }

  // The minimum cut proving source j's flow to the explained output at this layer, or null:
  // {kind, edges: [[l, i, j'], ...]} with edge (l-1, j') -> (l, i) leaving the cut's source side.
  // View arithmetic on what the page received (the side, the capacities); no flow is computed here.
  function cutOf(j, layer) {
    var C = D.flow_cuts;
    if (!C || j < 0 || outputKey() !== C.output) { return null; }
    var entry = C.layers[layer - 1];
    var mean = C.output === "mean";
    var depth = mean ? layer : layer - 1;
    var side = {};
    side[j] = true;
    entry.sides[j].forEach(function (node) { side[node] = true; });
    var edges = [];
    for (var k = 0; k <= depth; k++) {
      for (var a = 0; a < n; a++) {
        if (!side[k * n + a]) { continue; }
        if (k === depth) {
          if (!mean && CAP[layer - 1][C.output][a] > 0) { edges.push([layer, C.output, a]); }
          if (mean) { edges.push([layer + 1, -1, a]); }
          continue;
        }
        for (var b = 0; b < n; b++) {
          if (!side[(k + 1) * n + b] && CAP[k][b][a] > 0) { edges.push([k + 1, b, a]); }
        }
      }
    }
    return { kind: entry.kinds[j], edges: edges };
  }

  function setOutput(k) {
    if (k < 0 || k >= D.outputs.length || k === state.k) { return; }
    state.k = k;
    byId("output-select").value = String(k);
    update();
  }

  function setOutputToken(position) {
    var k = indexOfOutput(position);
    if (k >= 0) { setOutput(k); }
  }

  function setLayer(layer) {
    layer = Math.max(1, Math.min(L, layer));
    if (layer === state.layer) { byId("layer-range").value = String(layer); return; }
    state.layer = layer;
    byId("layer-range").value = String(layer);
    update();
  }

  // ------------------------------------------------------------------ token scores (sentences)

  function renderSentences() {
    var box = byId("sentences");
    clear(box);
    var key = outputKey();
    var caption = byId("tokens-caption");
    clear(caption);
    caption.appendChild(document.createTextNode("How much each input token contributes to "));
    caption.appendChild(el("b", null, outputLabel(key)));
    caption.appendChild(document.createTextNode(" after " + layerOf(state.layer) +
      ", by method. Darker is more. Click a token to explain it instead; hover for the value."));
    if (promptLength !== null) {
      caption.appendChild(document.createTextNode(" The first " + promptLength + " tokens are the prompt; the " +
        "underlined ones after them the answer the model generated (the token an output predicted is boxed)."));
    }
    if (D.words) {
      caption.appendChild(document.createTextNode(" Words: " + D.words.rule + "."));
    }
    if (sourceLength !== null) {
      caption.appendChild(document.createTextNode(" The first " + sourceLength + " tokens are the source (the " +
        "encoder's input); the ones after the gap the decoder positions (the first is the decoder start token)."));
    }
    methods.forEach(function (method) {
      var name = el("div", { "class": "method-name" });
      name.appendChild(el("span", { "class": "swatch", style: null }));
      name.firstChild.style.background = methodColour(method);
      name.appendChild(document.createTextNode(method));
      box.appendChild(name);
      var sentence = el("div", { "class": "sentence" });
      var row = scoresRow(method, state.layer, state.k);
      if (!row) {
        sentence.appendChild(el("span", { "class": "missing" }, "not computed for this output (see the note above)"));
      } else {
        var scale = scaler(method, row);
        NAMES.forEach(function (token, j) {
          var t = scale(row[j]);
          var classes = "tok" + (special[j] ? " special" : "") + (key === j ? " is-output" : "") +
            (isAnswer(j) ? " answer" : "") + (isAnswer(j) && key + 1 === j ? " is-predicted" : "") +
            (isTarget(j) ? " target" : "") + (sourceLength !== null && j === sourceLength ? " target-start" : "");
          var chip = el("span", {
            "class": classes,
            "data-tip": method + " \u00b7 " + layerName(state.layer) + "\n#" + j + " " + token + ": " + fmt(row[j], 4) +
              (promptLength === null ? "" : (isAnswer(j) ? "\n(answer)" : "\n(prompt)")) + sideOf(j)
          }, token);
          chip.style.background = ramp(t);
          chip.style.color = inkOn(t);
          var bounds = D.bounds && D.bounds[method];
          if (bounds && bounds.k === state.k && bounds.lower[state.layer - 1][j] !== null) {
            // the certified interval: a bar under the token from the lower to the upper bound, on the row's scale
            var lo = bounds.lower[state.layer - 1][j], hi = bounds.upper[state.layer - 1][j];
            var bar = el("span", { "class": "interval" });
            bar.style.left = (100 * Math.max(0, Math.min(1, scale(lo)))) + "%";
            bar.style.width = "max(2px, " + (100 * Math.max(0, Math.min(1, scale(hi)) - Math.max(0, scale(lo)))) + "%)";
            chip.appendChild(bar);
            chip.setAttribute("data-tip", chip.getAttribute("data-tip") + "\ncertified in [" + fmt(lo, 6) + ", " +
              fmt(hi, 6) + "]");
          }
          chip.addEventListener("click", function () { setOutputToken(j); });
          sentence.appendChild(chip);
        });
      }
      box.appendChild(sentence);
      if (D.words && D.words.scores && D.words.scores[method]) { renderWords(box, method); }
    });
    byId("ramp-min").textContent = state.scale === "range" ? "layer min" : "0";
    byId("ramp-max").textContent = state.scale === "map" ? "map max" : "layer max";
  }

  function renderWords(box, method) {
    // each word's score as computed in Python (the sum of its pieces'), scaled to this row's maximum
    var row = D.words.scores[method][state.layer - 1][state.k];
    var top = 0;
    row.forEach(function (v, w) {
      if (v !== null && !(state.ignoreSpecial && special[D.words.groups[w][0]])) { top = Math.max(top, v); }
    });
    box.appendChild(el("div", { "class": "method-name words-label" }, "\u2003words"));
    var sentence = el("div", { "class": "sentence words" });
    D.words.labels.forEach(function (label, w) {
      var group = D.words.groups[w];
      var t = row[w] === null || !(top > 0) ? 0 : Math.max(0, Math.min(1, row[w] / top));
      var chip = el("span", {
        "class": "tok" + (special[group[0]] ? " special" : "") + (isAnswer(group[0]) ? " answer" : ""),
        "data-tip": method + " \u00b7 layer " + state.layer + "\nword \u201c" + label + "\u201d (tokens " + group[0] +
          (group.length > 1 ? "\u2013" + group[group.length - 1] : "") + "): " + fmt(row[w], 4)
      }, label);
      chip.style.background = ramp(t);
      chip.style.color = inkOn(t);
      sentence.appendChild(chip);
    });
    box.appendChild(sentence);
  }

  // ------------------------------------------------------------------ heatmaps

  function renderHeatmaps() {
    var box = byId("heatmaps");
    clear(box);
    var key = outputKey();
    var caption = byId("heatmaps-caption");
    clear(caption);
    caption.appendChild(document.createTextNode("Rows are layers (the top layer at the top), columns are input tokens; scores for "));
    caption.appendChild(el("b", null, outputLabel(key)));
    caption.appendChild(document.createTextNode(". Click a row to choose that layer, a token to explain it."));
    var cellMin = n > 40 ? 12 : 18;
    // side by side while a heatmap fits its column; one per row for long inputs
    box.style.gridTemplateColumns = "repeat(auto-fit, minmax(" + Math.min(1180, Math.max(360, 90 + n * cellMin)) +
      "px, 1fr))";
    methods.forEach(function (method) {
      var card = el("div", { "class": "heatmap-card", "data-method": method });
      var title = el("div", { "class": "heatmap-title" });
      var name = el("span", { "class": "method-name" });
      var swatch = el("span", { "class": "swatch" });
      swatch.style.background = methodColour(method);
      name.appendChild(swatch);
      name.appendChild(document.createTextNode(method));
      title.appendChild(name);
      if (D.summaries && D.summaries[method]) { title.appendChild(el("small", null, D.summaries[method])); }
      card.appendChild(title);
      var scroll = el("div", { "class": "hm-scroll" });
      var grid = el("div", { "class": "hm" });
      grid.style.gridTemplateColumns = "max-content repeat(" + n + ", minmax(" + cellMin + "px, 1fr))";
      grid.appendChild(el("div"));
      for (var j = 0; j < n; j++) { grid.appendChild(el("div", { "class": "hm-marker" }, key === j ? "\u25bc" : "")); }
      for (var layer = L; layer >= 1; layer--) {
        var label = el("div", { "class": "hm-row-label" + (layer === state.layer ? " current" : ""), "data-layer": layer },
          layerName(layer));
        label.addEventListener("click", setLayer.bind(null, layer));
        grid.appendChild(label);
        var row = scoresRow(method, layer, state.k);
        var scale = scaler(method, row);
        for (j = 0; j < n; j++) {
          var value = row ? row[j] : null;
          var cell = el("div", {
            "class": "hm-cell" + (value === null ? " na" : "") + (layer === state.layer ? " current" : ""),
            "data-tip": method + " \u00b7 layer " + layer + "\n#" + j + " " + tokenName(j) + ": " +
              (value === null ? "not computed" : fmt(value, 4))
          });
          if (value !== null) { cell.style.background = ramp(scale(value)); }
          cell.addEventListener("click", setLayer.bind(null, layer));
          grid.appendChild(cell);
        }
      }
      grid.appendChild(el("div"));
      for (j = 0; j < n; j++) {
        var tokenLabel = el("div", {
          "class": "hm-col-label" + (special[j] ? " special" : "") + (key === j ? " is-output" : ""),
          "data-tip": "#" + j + " " + tokenName(j) + "\nclick to explain this token"
        }, tokenName(j));
        tokenLabel.addEventListener("click", setOutputToken.bind(null, j));
        grid.appendChild(tokenLabel);
      }
      scroll.appendChild(grid);
      card.appendChild(scroll);
      box.appendChild(card);
    });
  }

  // ------------------------------------------------------------------ image view

  var IMG = D.image || null;
  var PNG_PREFIX = "data:image/png;base64,";

  function renderImage() {
    if (!IMG) { return; }
    var box = byId("image-views");
    clear(box);
    var key = outputKey();
    var caption = byId("image-caption");
    clear(caption);
    caption.appendChild(document.createTextNode("Each patch coloured by its score for "));
    caption.appendChild(el("b", null, outputLabel(key)));
    caption.appendChild(document.createTextNode(" after " + layerOf(state.layer) +
      " (special tokens such as [CLS] are not patches and are not shown). Click a patch to explain it instead."));
    var rows = IMG.grid[0], cols = IMG.grid[1];
    var width = IMG.width || 192, height = IMG.height || 192;
    var scaleDown = Math.min(1, 280 / Math.max(width, height));
    var w = Math.round(width * scaleDown), h = Math.round(height * scaleDown);
    var original = methods.length ? [null].concat(methods) : [null];
    original.forEach(function (method) {
      var card = el("div", { "class": "image-card", "data-method": method === null ? "image" : method });
      var name = el("span", { "class": "method-name" });
      if (method !== null) {
        var swatch = el("span", { "class": "swatch" });
        swatch.style.background = methodColour(method);
        name.appendChild(swatch);
      }
      name.appendChild(document.createTextNode(method === null ? "image" : method));
      card.appendChild(name);
      var svg = sv("svg", { width: w, height: h, viewBox: "0 0 " + w + " " + h, role: "img" });
      var picture = sv("image", { x: 0, y: 0, width: w, height: h, preserveAspectRatio: "none" });
      if (typeof IMG.png === "string" && IMG.png.indexOf(PNG_PREFIX) === 0) { picture.setAttribute("href", IMG.png); }
      picture.style.imageRendering = "pixelated";
      svg.appendChild(picture);
      if (method !== null) {
        var row = scoresRow(method, state.layer, state.k);
        var scale = row ? scaler(method, row) : null;
        for (var r = 0; r < rows; r++) {
          for (var c = 0; c < cols; c++) {
            var position = IMG.patch_positions[r * cols + c];
            var value = row ? row[position] : null;
            var x0 = Math.round(c * w / cols), y0 = Math.round(r * h / rows);
            var rect = sv("rect", {
              "class": "patch" + (key === position ? " is-output" : ""),
              x: x0, y: y0, width: Math.round((c + 1) * w / cols) - x0, height: Math.round((r + 1) * h / rows) - y0,
              "data-tip": method + " \u00b7 layer " + state.layer + "\n#" + position + " " + tokenName(position) + ": " +
                (value === null ? "not computed" : fmt(value, 4))
            });
            rect.style.fill = value === null ? "#94a3b8" : ramp(scale(value));
            rect.style.fillOpacity = value === null ? "0.35" : "0.62";
            rect.addEventListener("click", setOutputToken.bind(null, position));
            svg.appendChild(rect);
          }
        }
      }
      card.appendChild(svg);
      box.appendChild(card);
    });
  }

  // ------------------------------------------------------------------ attention graph

  function capacities() {
    // Ahat = rownorm((1 - r) * A + r * I), as in attnflow.graph.add_residual; used only to split a
    // node's share (from the data) over its incoming edges, for drawing
    var r = D.residual;
    return D.attention.map(function (layer) {
      return layer.map(function (row, i) {
        var out = row.map(function (v, j) { return (1 - r) * v + (i === j ? r : 0); });
        var sum = out.reduce(function (a, b) { return a + b; }, 0);
        return out.map(function (v) { return sum > 0 ? v / sum : 0; });
      });
    });
  }

  var CAP = null;

  function shares(layer, k) {
    // each node's share of output k at this layer, as the library computed it
    // (attnflow.methods.rollout.node_shares, in the data): v[m][j] for the nodes below, the output on top
    var perOutput = D.shares ? D.shares[k] : null;
    if (!perOutput) { return null; }
    var v = perOutput[layer - 1].slice();
    var key = D.outputs[k];
    var top = [];
    for (var i = 0; i < n; i++) { top.push(key === "mean" ? 1 / n : (i === key ? 1 : 0)); }
    v.push(top);
    return v;
  }

  function renderGraph() {
    var svg = byId("graph");
    clear(svg);
    if (!D.attention) { return; }
    if (!CAP) { CAP = capacities(); }
    var key = outputKey();
    var layer = state.layer;
    var colW = Math.max(30, Math.min(74, 1060 / Math.max(n, 1)));
    var rowH = Math.max(54, Math.min(84, 560 / Math.max(L, 1)));
    var labelLen = NAMES.reduce(function (a, t) { return Math.max(a, t.length); }, 1);
    var left = D.layer_names ? 104 : 78, right = 24, top = 28, barH = 46;
    var bottom = barH + 22 + Math.min(110, 14 + labelLen * 6.2);
    var width = left + n * colW + right;
    var height = top + L * rowH + bottom;
    setAttrs(svg, { width: width, height: height, viewBox: "0 0 " + width + " " + height,
      "data-layer": layer, "data-output": String(key) });
    function x(i) { return left + colW * (i + 0.5); }
    function y(l) { return top + (L - l) * rowH; }

    var v = shares(layer, state.k);
    var gEdges = sv("g", { "class": "edges" });
    var gFlow = sv("g", { "class": "route" });
    var gNodes = sv("g", { "class": "nodes" });
    var gLabels = sv("g", { "class": "labels" });
    svg.appendChild(gEdges); svg.appendChild(gFlow); svg.appendChild(gNodes); svg.appendChild(gLabels);

    var l, i, j, w;
    var shown = 0;
    for (l = 1; l <= L; l++) {
      var A = D.attention[l - 1];
      for (i = 0; i < n; i++) {
        for (j = 0; j < n; j++) {
          w = A[i][j];
          if (w < state.threshold || w <= 0) { continue; }
          shown++;
          gEdges.appendChild(sv("line", {
            x1: x(j), y1: y(l - 1), x2: x(i), y2: y(l), "class": isCross(l, i, j) ? "cross-edge" : null,
            stroke: isCross(l, i, j) ? "#0d9488" : "#8b93a7", "stroke-opacity": (0.12 + 0.55 * w).toFixed(3),
            "stroke-width": (0.4 + 4.2 * w).toFixed(2), "stroke-linecap": "round"
          }));
        }
      }
    }
    var routeMax = 0;
    var routes = [];
    for (l = v ? layer : 0; l >= 1; l--) {
      for (i = 0; i < n; i++) {
        if (v[l][i] === 0) { continue; }
        for (j = 0; j < n; j++) {
          var c = v[l][i] * CAP[l - 1][i][j];
          if (c > 0) { routes.push([l, i, j, c]); routeMax = Math.max(routeMax, c); }
        }
      }
    }
    routes.sort(function (a, b) { return a[3] - b[3]; });
    routes.forEach(function (r) {
      if (r[3] < Math.max(0.004, routeMax * 0.03)) { return; }
      var rel = r[3] / routeMax;
      gFlow.appendChild(sv("line", {
        x1: x(r[2]), y1: y(r[0] - 1), x2: x(r[1]), y2: y(r[0]),
        stroke: "#ea580c", "stroke-opacity": (0.35 + 0.55 * rel).toFixed(3),
        "stroke-width": (1 + 7 * rel).toFixed(2), "stroke-linecap": "round",
        "data-tip": "#" + r[2] + " " + tokenName(r[2]) + " (layer " + (r[0] - 1) + ") \u2192 #" + r[1] + " " +
          tokenName(r[1]) + " (layer " + r[0] + ")\nattention " + fmt(D.attention[r[0] - 1][r[1]][r[2]]) +
          " \u00b7 carries " + fmt(r[3]) + " of the output"
      }));
    });

    var cut = cutOf(state.cutSource, layer);
    var gCut = sv("g", { "class": "cut" });
    svg.appendChild(gCut);
    if (cut) {
      cut.edges.forEach(function (e) {
        var toTop = e[1] < 0;  // the mean output's super-sink: a stub above the node
        gCut.appendChild(sv("line", {
          x1: x(e[2]), y1: y(e[0] - 1), x2: toTop ? x(e[2]) : x(e[1]), y2: toTop ? y(e[0] - 1) - rowH * 0.35 : y(e[0]),
          stroke: "#111827", "stroke-width": 1.6, "stroke-dasharray": "4 3", "stroke-linecap": "round",
          "data-tip": "cut edge of #" + state.cutSource + " " + tokenName(state.cutSource) + ": #" + e[2] + " " +
            tokenName(e[2]) + " (layer " + (e[0] - 1) + ") \u2192 " +
            (toTop ? "the mean output" : "#" + e[1] + " " + tokenName(e[1]) + " (layer " + e[0] + ")") +
            "\ncapacity " + fmt(toTop ? 1 / n : CAP[e[0] - 1][e[1]][e[2]])
        }));
      });
    }

    for (l = 0; l <= L; l++) {
      gLabels.appendChild(sv("text", {
        x: left - 16, y: y(l) + 4, "text-anchor": "end",
        "class": "layer-label" + (l === layer ? " current" : "")
      }, l === 0 ? "input" : layerName(l)));
      var top_ = 0;
      if (v && l <= layer) { for (i = 0; i < n; i++) { top_ = Math.max(top_, v[l][i]); } }
      for (i = 0; i < n; i++) {
        var active = v !== null && l <= layer;
        var s = active && top_ > 0 ? v[l][i] / top_ : 0;
        var isOut = l === layer && key === i;
        var node = sv("circle", {
          cx: x(i), cy: y(l), r: isOut ? 9 : 6.5, "class": "node",
          fill: active ? interpolate(SHARE_RAMP, s) : "#eef0f5",
          stroke: isOut ? "#1e2230" : (active ? "#c2410c" : "#c8cdd9"),
          "stroke-width": isOut ? 2.4 : (active ? 0.9 : 0.8),
          "data-layer": l, "data-position": i,
          "data-tip": "#" + i + " " + tokenName(i) + sideOf(i).replace("\n", " ") + " \u00b7 " +
            (l === 0 ? "input" : layerName(l)) +
            (active ? "\nshare of the output (rollout): " + fmt(v[l][i], 4) :
              (v ? "\nabove the chosen layer" : "\nroute not in this report (see the notes)")) +
            (l > 0 ? "\nclick: explain this token at this layer" : "\nclick: explain this token")
        });
        node.addEventListener("click", (function (ll, ii) {
          return function () {
            var k = indexOfOutput(ii);
            var changed = false;
            if (k >= 0 && k !== state.k) { state.k = k; byId("output-select").value = String(k); changed = true; }
            if (ll >= 1 && ll !== state.layer) { state.layer = ll; byId("layer-range").value = String(ll); changed = true; }
            if (changed) { update(); }
          };
        })(l, i));
        gNodes.appendChild(node);
      }
    }

    // bars under the input row: the chosen method's scores
    var method = state.graphMethod;
    var row = method ? scoresRow(method, layer, state.k) : null;
    var barTop = y(0) + 14;
    if (row) {
      var maxScore = 0;
      row.forEach(function (value) { if (value !== null) { maxScore = Math.max(maxScore, value); } });
      for (i = 0; i < n; i++) {
        var value = row[i] === null ? 0 : row[i];
        var h = maxScore > 0 ? Math.max(1, barH * value / maxScore) : 1;
        var bar = sv("rect", {
          x: x(i) - Math.min(9, colW * 0.3), y: barTop + barH - h, width: Math.min(18, colW * 0.6), height: h, rx: 2,
          fill: methodColour(method), "fill-opacity": 0.85, "class": "score-bar", "data-position": i,
          "data-tip": method + " score of #" + i + " " + tokenName(i) + "\nfor " + outputLabel(key) +
            " at layer " + layer + ": " + fmt(row[i], 4) + (D.flow_cuts ? "\nclick: draw its flow cut" : "")
        });
        gLabels.appendChild(bar);
        if (D.flow_cuts) {
          bar.addEventListener("click", (function (ii) {
            return function () { setCutSource(state.cutSource === ii ? -1 : ii); };
          })(i));
        }
      }
    } else {
      gLabels.appendChild(sv("text", { x: left, y: barTop + barH / 2, "class": "layer-label" },
        (method || "the method") + " was not computed for this output"));
    }
    gLabels.appendChild(sv("text", { x: left - 16, y: barTop + barH - 2, "text-anchor": "end", "class": "layer-label" },
      method || ""));
    var labelY = barTop + barH + 14;
    for (i = 0; i < n; i++) {
      var t = tokenName(i);
      var text = sv("text", {
        x: x(i), y: labelY, "text-anchor": "end",
        transform: "rotate(-50 " + x(i) + " " + labelY + ")",
        "class": "tok-label" + (special[i] ? " special" : "") + (key === i ? " is-output" : ""),
        "data-tip": "#" + i + " " + t
      }, t.length > 16 ? t.slice(0, 15) + "\u2026" : t);
      gLabels.appendChild(text);
    }

    if (sourceLength !== null) {
      var divide = (x(sourceLength - 1) + x(sourceLength)) / 2;
      gLabels.appendChild(sv("line", { x1: divide, y1: top - 20, x2: divide, y2: y(0) + 8, stroke: "#c8cdd9",
        "stroke-dasharray": "3 4", "class": "side-divider" }));
      gLabels.appendChild(sv("text", { x: divide - 8, y: top - 10, "text-anchor": "end", "class": "layer-label" },
        "source"));
      gLabels.appendChild(sv("text", { x: divide + 8, y: top - 10, "class": "layer-label" }, "target"));
    }
    var caption = byId("graph-caption");
    clear(caption);
    caption.appendChild(document.createTextNode("Nodes are tokens at each layer; grey edges are the fused attention (width \u221d weight, " +
      shown + " edges \u2265 " + state.threshold.toFixed(2) + " shown). Orange: how the information of "));
    caption.appendChild(el("b", null, outputLabel(key)));
    caption.appendChild(document.createTextNode(" at layer " + layer +
      " reaches back through the residual-augmented graph (backward rollout" +
      (v ? "" : "; not in this report for this output, see the notes") + "). Click a node to explain it."));
    if (D.flow_cuts) {
      var cutText;
      if (outputKey() !== D.flow_cuts.output) {
        cutText = " Flow cuts are in this report for " + outputLabel(D.flow_cuts.output) + " only.";
      } else if (!cut) {
        cutText = " Click a bar (or choose a token above) to draw the minimum cut that proves its flow.";
      } else {
        var why = { source: "at the source: its flow is the attention it receives in layer 1",
          output: "at the output: its flow is the output's own capacity",
          inside: "inside: a real bottleneck between the token and the output" }[cut.kind] || cut.kind;
        cutText = " Dashed: the minimum cut proving the flow of #" + state.cutSource + " " + tokenName(state.cutSource) +
          " (" + cut.edges.length + " edges), " + why + ".";
      }
      caption.appendChild(document.createTextNode(cutText));
    }
    byId("threshold-value").textContent = state.threshold.toFixed(2);
    var legendBar = byId("legend-bar");
    if (legendBar && method) { legendBar.style.background = methodColour(method); }
  }

  function renderGraphLegend() {
    var legend = byId("graph-legend");
    function item(draw, text) {
      var span = el("span");
      var icon = el("i");
      draw(icon);
      span.appendChild(icon);
      span.appendChild(document.createTextNode(text));
      legend.appendChild(span);
    }
    item(function (i) { i.style.cssText = "width:26px;height:3px;background:#8b93a7;opacity:.6;border-radius:2px"; },
      "fused attention (heads: " + D.head_fusion + ")");
    item(function (i) { i.style.cssText = "width:26px;height:5px;background:#ea580c;border-radius:3px"; },
      "share of the chosen output carried by the edge");
    item(function (i) {
      i.style.cssText = "width:12px;height:12px;border-radius:50%;background:#fb923c;border:1px solid #c2410c";
    }, "node's share of the output");
    item(function (i) { i.id = "legend-bar"; i.style.cssText = "width:9px;height:14px;border-radius:2px"; },
      "bars: the chosen method's score of each input token");
    if (D.flow_cuts) {
      item(function (i) { i.style.cssText = "width:26px;height:0;border-top:2px dashed #111827"; },
        "a token's flow cut (click its bar)");
    }
  }

  // ------------------------------------------------------------------ method comparison

  function ranks(values) {
    var order = values.map(function (v, i) { return [v, i]; }).sort(function (a, b) { return a[0] - b[0]; });
    var result = new Array(values.length);
    for (var i = 0; i < order.length;) {
      var j = i;
      while (j + 1 < order.length && order[j + 1][0] === order[i][0]) { j++; }
      for (var m = i; m <= j; m++) { result[order[m][1]] = (i + j) / 2 + 1; }
      i = j + 1;
    }
    return result;
  }

  function spearman(a, b) {
    var keep = [];
    for (var i = 0; i < a.length; i++) {
      if (!special[i] && a[i] !== null && b[i] !== null) { keep.push(i); }
    }
    if (keep.length < 3) { return null; }
    var ra = ranks(keep.map(function (i) { return a[i]; }));
    var rb = ranks(keep.map(function (i) { return b[i]; }));
    var ma = ra.reduce(function (s, v) { return s + v; }, 0) / ra.length;
    var mb = rb.reduce(function (s, v) { return s + v; }, 0) / rb.length;
    var num = 0, da = 0, db = 0;
    for (i = 0; i < ra.length; i++) {
      num += (ra[i] - ma) * (rb[i] - mb); da += (ra[i] - ma) * (ra[i] - ma); db += (rb[i] - mb) * (rb[i] - mb);
    }
    return da > 0 && db > 0 ? num / Math.sqrt(da * db) : null;
  }

  function renderCompare() {
    var table = byId("compare");
    clear(table);
    var key = outputKey();
    var caption = byId("compare-caption");
    clear(caption);
    caption.appendChild(document.createTextNode("Scores after layer " + state.layer + " for "));
    caption.appendChild(el("b", null, outputLabel(key)));
    caption.appendChild(document.createTextNode("; each bar is scaled to its method's largest score."));
    var head = el("tr");
    head.appendChild(el("th", { "class": "num" }, "#"));
    head.appendChild(el("th", null, "token"));
    var rows = {};
    var tops = {};
    methods.forEach(function (m) {
      var th = el("th", { colspan: 2 });
      var sw = el("span", { "class": "swatch" });
      sw.style.background = methodColour(m);
      th.appendChild(sw);
      // an attribution method scores the input: the same row after every layer
      th.appendChild(document.createTextNode(" " + m + ((D.input_methods || []).indexOf(m) >= 0 ? " (input)" : "")));
      head.appendChild(th);
      rows[m] = scoresRow(m, state.layer, state.k);
      tops[m] = 0;
      if (rows[m]) { rows[m].forEach(function (v) { if (v !== null) { tops[m] = Math.max(tops[m], v); } }); }
    });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    NAMES.forEach(function (token, j) {
      var tr = el("tr", { "class": (special[j] ? "special" : "") + (key === j ? " is-output" : "") });
      tr.appendChild(el("td", { "class": "pos" }, String(j)));
      tr.appendChild(el("td", { "class": "tokcell" }, token));
      methods.forEach(function (m) {
        var value = rows[m] ? rows[m][j] : null;
        tr.appendChild(el("td", { "class": "num" }, fmt(value)));
        var cell = el("td");
        var bar = el("div", { "class": "bar" });
        var fill = el("i");
        fill.style.width = (value !== null && tops[m] > 0 ? 100 * value / tops[m] : 0).toFixed(1) + "%";
        fill.style.background = methodColour(m);
        bar.appendChild(fill);
        cell.appendChild(bar);
        tr.appendChild(cell);
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    var agreement = byId("agreement");
    var parts = [];
    for (var a = 0; a < methods.length; a++) {
      for (var b = a + 1; b < methods.length; b++) {
        if (rows[methods[a]] && rows[methods[b]]) {
          parts.push(methods[a] + " vs " + methods[b] + ": " + fmt(spearman(rows[methods[a]], rows[methods[b]]), 2));
        }
      }
    }
    agreement.textContent = parts.length ? "Rank agreement (Spearman \u03c1 over the non-special tokens) at this layer \u2014 " +
      parts.join(" \u00b7 ") : "";
  }

  // ------------------------------------------------------------------ evaluation

  function renderEvaluation() {
    var E = D.evaluation;
    if (!E) { return; }
    byId("sec-eval").hidden = false;
    var meta = [];
    if (E.model) { meta.push("model " + E.model); }
    if (E.target) { meta.push("target " + E.target); }
    if (E.n_examples !== null && E.n_examples !== undefined) { meta.push(E.n_examples + " examples"); }
    if (E.output) { meta.push("output " + E.output); }
    if (E.accuracy !== null && E.accuracy !== undefined) {
      meta.push("accuracy " + fmt(E.accuracy, 2) +
        (E.paper && E.paper.accuracy !== null && E.paper.accuracy !== undefined ? " (paper " + fmt(E.paper.accuracy, 2) + ")" : ""));
    }
    byId("eval-meta").textContent = (meta.length ? meta.join(" \u00b7 ") + ". " : "") +
      "Spearman correlation per example between a method's scores and the ground-truth importance, mean \u00b1 sd per layer.";
    var charts = byId("eval-charts");
    Object.keys(E.correlation).forEach(function (truth) {
      var card = el("div", { "class": "eval-card", "data-truth": truth });
      card.appendChild(el("h3", null, "Correlation with " + truth));
      var paper = E.paper && E.paper.layer && E.paper.correlation[truth] ? E.paper.correlation[truth] : null;
      card.appendChild(correlationChart(E.correlation[truth], paper, paper ? E.paper.layer : null));
      card.appendChild(correlationTable(E.correlation[truth]));
      if (paper) {
        var parts = Object.keys(paper).map(function (m) { return m + " " + fmt(paper[m], 2); });
        card.appendChild(el("p", { "class": "caption" }, "\u25c7 The paper, layer " + E.paper.layer + ": " +
          parts.join(" \u00b7 ") + (E.paper.source ? ". " + E.paper.source : "")));
      }
      charts.appendChild(card);
    });
    if (E.faithfulness && E.faithfulness.methods) { renderFaithfulness(E.faithfulness); }
  }

  function meanSd(pair, digits) {
    if (pair[0] === null) { return "\u2013"; }
    return fmt(pair[0], digits) + (pair[1] === null ? "" : " \u00b1 " + fmt(pair[1], digits));
  }

  function evalColour(name, index) {
    return METHOD_COLOURS[name] || EXTRA_COLOURS[index % EXTRA_COLOURS.length];
  }

  function correlationChart(perMethod, paper, paperLayer) {
    var names = Object.keys(perMethod);
    var layers = names.reduce(function (a, m) { return Math.max(a, perMethod[m].length); }, 1);
    var W = 460, H = 250, l = 44, r = 96, t = 12, b = 36;
    var lo = -1, hi = 1;
    var svg = sv("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img" });
    function px(layer) { return l + (layers === 1 ? (W - l - r) / 2 : (layer - 1) * (W - l - r) / (layers - 1)); }
    function py(v) { return t + (hi - v) * (H - t - b) / (hi - lo); }
    [-1, -0.5, 0, 0.5, 1].forEach(function (v) {
      svg.appendChild(sv("line", { x1: l, x2: W - r, y1: py(v), y2: py(v), stroke: v === 0 ? "#9aa1b2" : "#e8eaf0",
        "stroke-width": 1 }));
      svg.appendChild(sv("text", { x: l - 6, y: py(v) + 4, "text-anchor": "end", "font-size": 11, fill: "#626a7e" },
        v.toFixed(1)));
    });
    for (var layer = 1; layer <= layers; layer++) {
      svg.appendChild(sv("text", { x: px(layer), y: H - b + 16, "text-anchor": "middle", "font-size": 11, fill: "#626a7e" },
        String(layer)));
    }
    svg.appendChild(sv("text", { x: (l + W - r) / 2, y: H - 4, "text-anchor": "middle", "font-size": 11.5, fill: "#626a7e" },
      "layer"));
    names.forEach(function (m, index) {
      var colour = evalColour(m, index);
      var pts = perMethod[m];
      var upper = [], lower = [], line = [];
      pts.forEach(function (p, i) {
        if (p[0] === null) { return; }
        var sd = p[1] === null ? 0 : p[1];
        upper.push(px(i + 1) + "," + py(Math.min(hi, p[0] + sd)));
        lower.unshift(px(i + 1) + "," + py(Math.max(lo, p[0] - sd)));
        line.push(px(i + 1) + "," + py(p[0]));
      });
      if (upper.length > 1) {
        svg.appendChild(sv("polygon", { points: upper.concat(lower).join(" "), fill: colour, "fill-opacity": 0.12 }));
      }
      if (line.length > 1) {
        svg.appendChild(sv("polyline", { points: line.join(" "), fill: "none", stroke: colour, "stroke-width": 2.2 }));
      }
      pts.forEach(function (p, i) {
        if (p[0] === null) { return; }
        svg.appendChild(sv("circle", { cx: px(i + 1), cy: py(p[0]), r: 3.6, fill: colour,
          "data-tip": m + " \u00b7 layer " + (i + 1) + "\n\u03c1 = " + meanSd(p, 3) }));
      });
      if (paper && paper[m] !== undefined && paperLayer <= layers) {
        var cx = px(paperLayer), cy = py(paper[m]);
        svg.appendChild(sv("path", {
          d: "M" + cx + " " + (cy - 6) + "L" + (cx + 6) + " " + cy + "L" + cx + " " + (cy + 6) + "L" + (cx - 6) + " " + cy + "Z",
          fill: "#ffffff", stroke: colour, "stroke-width": 1.8,
          "data-tip": m + " \u00b7 the paper, layer " + paperLayer + "\n\u03c1 = " + fmt(paper[m], 2)
        }));
      }
      svg.appendChild(sv("rect", { x: W - r + 14, y: t + 8 + index * 20, width: 12, height: 4, rx: 2, fill: colour }));
      svg.appendChild(sv("text", { x: W - r + 32, y: t + 14 + index * 20, "font-size": 12, fill: "#1e2230" }, m));
    });
    return svg;
  }

  function correlationTable(perMethod) {
    var names = Object.keys(perMethod);
    var layers = names.reduce(function (a, m) { return Math.max(a, perMethod[m].length); }, 0);
    var table = el("table");
    var head = el("tr");
    head.appendChild(el("th", null, "layer"));
    names.forEach(function (m) { head.appendChild(el("th", { "class": "num" }, m)); });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    for (var i = 0; i < layers; i++) {
      var tr = el("tr");
      tr.appendChild(el("td", null, String(i + 1)));
      names.forEach(function (m) {
        var p = perMethod[m][i] || [null, null];
        tr.appendChild(el("td", { "class": "num" }, meanSd(p, 2)));
      });
      body.appendChild(tr);
    }
    table.appendChild(body);
    return table;
  }

  function renderFaithfulness(F) {
    var box = byId("eval-faith");
    box.className = "eval-faith";
    box.appendChild(el("h3", null, "Faithfulness" + (F.layer ? " at layer " + F.layer : "")));
    var table = el("table");
    var head = el("tr");
    ["method", "AOPC comprehensiveness \u2191", "AOPC sufficiency \u2193"].forEach(function (h, i) {
      head.appendChild(el("th", { "class": i ? "num" : null }, h));
    });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    Object.keys(F.methods).forEach(function (m) {
      var values = F.methods[m];
      var tr = el("tr");
      tr.appendChild(el("td", null, m));
      ["aopc_comprehensiveness", "aopc_sufficiency"].forEach(function (keyName) {
        var p = values[keyName] || [null, null];
        tr.appendChild(el("td", { "class": "num" }, meanSd(p, 3)));
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    box.appendChild(table);
    var percents = (F.percents || []).join(", ");
    box.appendChild(el("p", { "class": "caption" }, "Top " + (percents || "k") + " % of tokens removed" +
      (F.removal ? " (" + F.removal + ")" : "") + "; comprehensiveness: the drop when they are removed (higher is better); " +
      "sufficiency: the drop when only they are kept (lower is better)."));
  }

  // ------------------------------------------------------------------ heads

  function sig(v) {
    if (v === null || v === undefined || !isFinite(v)) { return "\u2013"; }
    return Math.abs(v) >= 0.01 || v === 0 ? Number(v).toFixed(3) : Number(v).toPrecision(2);
  }

  function headName(l, h) { return "L" + (l + 1) + "H" + (h + 1); }

  function renderHeads() {
    var P = D.heads;
    if (!P) { return; }
    byId("sec-heads").hidden = false;
    var top = 0, order = [];
    P.importance.forEach(function (row, l) {
      row.forEach(function (v, h) {
        if (v !== null) { top = Math.max(top, v); order.push([v, l, h]); }
      });
    });
    order.sort(function (a, b) { return b[0] - a[0] || a[1] - b[1] || a[2] - b[2]; });
    var rank = {};
    order.forEach(function (item, i) { rank[item[1] + "," + item[2]] = i + 1; });
    var total = P.n_layers * P.n_heads;
    var meta = [];
    if (P.model) { meta.push("model " + P.model); }
    if (P.target) { meta.push("target " + P.target); }
    meta.push(P.n_examples + (P.n_examples === 1 ? " example" : " examples"));
    if (P.source) { meta.push(P.source); }
    var th = P.thresholds || {};
    byId("heads-caption").textContent = meta.join(" \u00b7 ") + ". Each cell is one head: its roles by Voita et al.'s " +
      "definitions (previous / next: the maximum attention on that neighbour in at least " +
      fmt(th.positional, 2) + " of the queries; rare: on the rarest token in at least " + fmt(th.rare, 2) +
      "; a relation: beats that relation's positional baseline by " + fmt(th.syntactic_margin, 2) +
      ") and its importance (mean |dS/d\u03be|, Michel et al.), which the colour shows, scaled to the largest. " +
      "Hover a head for its relevance and confidence.";
    var table = byId("heads-grid");
    clear(table);
    var thead = el("thead"), head = el("tr");
    head.appendChild(el("th", null, "layer"));
    for (var h = 0; h < P.n_heads; h++) { head.appendChild(el("th", { "class": "num" }, "head " + (h + 1))); }
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    P.roles.forEach(function (row, l) {
      var tr = el("tr");
      tr.appendChild(el("td", { "class": "heads-layer" }, String(l + 1)));
      row.forEach(function (labels, h) {
        var v = P.importance[l][h];
        var t = v === null || !(top > 0) ? 0 : v / top;
        var cell = el("td", {
          "class": "head-cell" + (labels.length ? " has-role" : ""),
          "data-layer": l + 1, "data-head": h + 1,
          "data-tip": "layer " + (l + 1) + " \u00b7 head " + (h + 1) +
            "\nroles: " + (labels.length ? labels.join(", ") : "none") +
            "\nimportance " + sig(v) + (rank[l + "," + h] ? " (rank " + rank[l + "," + h] + " of " + total + ")" : "") +
            "\nrelevance " + sig(P.relevance[l][h]) + " \u00b7 confidence " + sig(P.confidence[l][h])
        });
        cell.style.background = ramp(t);
        cell.style.color = inkOn(t);
        cell.appendChild(el("span", { "class": "head-roles" }, labels.length ? labels.join(", ") : "\u2013"));
        cell.appendChild(el("span", { "class": "head-score" }, sig(v)));
        tr.appendChild(cell);
      });
      body.appendChild(tr);
    });
    table.appendChild(body);
    var best = order.slice(0, Math.min(5, order.length)).map(function (item) {
      var labels = P.roles[item[1]][item[2]];
      return headName(item[1], item[2]) + " (" + (labels.length ? labels.join(", ") : "no role") + ")";
    });
    byId("heads-top").textContent = best.length ? "Most important: " + best.join(" \u00b7 ") + "." : "";
  }

  // ------------------------------------------------------------------ wiring

  function update() {
    byId("layer-value").textContent = state.layer + " / " + L;
    renderSentences();
    renderImage();
    renderHeatmaps();
    renderGraph();
    renderCompare();
    document.body.setAttribute("data-layer", String(state.layer));
    document.body.setAttribute("data-output", String(outputKey()));
  }

  renderHeader();
  if (n && methods.length) {
    setupControls();
    ["sec-tokens", "sec-heatmaps", "sec-compare"].forEach(function (id) { byId(id).hidden = false; });
    byId("sec-graph").hidden = !D.attention;
    byId("sec-image").hidden = !IMG;
    byId("graph-method").value = state.graphMethod;
    byId("threshold-value").textContent = state.threshold.toFixed(2);
    byId("threshold-range").value = String(state.threshold);
    if (D.attention) { renderGraphLegend(); }
    update();
  }
  renderEvaluation();
  renderHeads();
  document.querySelector(".ramp-bar").style.background =
    "linear-gradient(to right, " + [0, 0.2, 0.4, 0.6, 0.8, 1].map(ramp).join(", ") + ")";

  // for tests and for the curious: read the view's state from the console
  window.attnflowReport = {
    state: function () {
      return { layer: state.layer, output: outputKey(), graphMethod: state.graphMethod, cutSource: state.cutSource };
    },
    setCutSource: setCutSource,
    inputShares: function () {
      var v = D.attention ? shares(state.layer, state.k) : null;
      return v ? v[0] : null;
    },
    setLayer: setLayer,
    setOutputToken: setOutputToken
  };
  document.body.setAttribute("data-ready", "true");
})();
