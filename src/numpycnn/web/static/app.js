// numpycnn drawing page: draw on #pad, ask /api/predict, show the answer, the input, every layer and one
// convolution step by step. Plain JavaScript, no build step; every number shown comes from the server.
"use strict";

(function () {
  const PEN_WIDTH = 20; // in pad pixels (the pad is 280x280)
  const $ = (id) => document.getElementById(id);
  const pad = $("pad");
  const ctx = pad.getContext("2d");
  const state = {
    models: [], model: null, description: null,
    strokes: [], current: null, upload: null,
    seq: 0, image: null, result: null, step: null,
    target: null, targetChosen: false, grads: null, weight: null,
  };

  // -- small helpers ---------------------------------------------------------------------------------------
  function el(tag, props, children) {
    const node = document.createElement(tag);
    Object.assign(node, props || {});
    for (const child of children || []) node.append(child);
    return node;
  }

  function fmt(v, digits) {
    if (!Number.isFinite(v)) return String(v);
    const d = digits === undefined ? 4 : digits;
    return Math.abs(v) >= 1e4 || (v !== 0 && Math.abs(v) < 1e-3) ? v.toExponential(2) : v.toFixed(d);
  }

  function decode(blob) { // {shape, data: base64 little-endian float32} -> Float32Array
    const bytes = Uint8Array.from(atob(blob.data), (c) => c.charCodeAt(0));
    return new Float32Array(bytes.buffer);
  }

  // Diverging colour map centred on zero (ColorBrewer RdBu): blue negative, white zero, red positive.
  const STOPS = [[5, 48, 97], [67, 147, 195], [247, 247, 247], [214, 96, 77], [103, 0, 31]];
  function colour(v, scale) {
    const t = scale > 0 ? Math.max(-1, Math.min(1, v / scale)) : 0;
    const x = (t + 1) * 2; // 0..4 across the stops
    const i = Math.min(3, Math.floor(x));
    const f = x - i;
    const a = STOPS[i], b = STOPS[i + 1];
    return [a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, a[2] + (b[2] - a[2]) * f];
  }

  function heatCanvas(values, offset, h, w, scale) {
    const canvas = el("canvas", { width: w, height: h });
    const img = canvas.getContext("2d").createImageData(w, h);
    for (let k = 0; k < h * w; k++) {
      const c = colour(values[offset + k], scale);
      img.data.set([c[0], c[1], c[2], 255], 4 * k);
    }
    canvas.getContext("2d").putImageData(img, 0, 0);
    return canvas;
  }

  function colourBar(scale) { // the bar, with -scale, 0 and +scale under its ends and middle
    const canvas = el("canvas", { width: 110, height: 1 });
    const g = canvas.getContext("2d");
    for (let x = 0; x < 110; x++) {
      const c = colour((x / 109) * 2 - 1, 1);
      g.fillStyle = `rgb(${c[0]},${c[1]},${c[2]})`;
      g.fillRect(x, 0, 1, 1);
    }
    const ticks = el("span", { className: "ticks" }, [
      el("span", { textContent: fmt(-scale, 2) }), el("span", { textContent: "0" }), el("span", { textContent: fmt(scale, 2) }),
    ]);
    return el("span", { className: "colorbar", title: "colour scale, centred on zero" }, [canvas, ticks]);
  }

  function setStatus(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
  }

  async function api(path, body) {
    const options = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    };
    const response = await fetch(path, options);
    let data;
    try { data = await response.json(); } catch (e) { data = { error: `HTTP ${response.status}` }; }
    if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
    return data;
  }

  // -- the pad -----------------------------------------------------------------------------------------------
  function redraw() {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, pad.width, pad.height);
    if (state.upload) {
      const im = state.upload.img;
      const s = Math.min(pad.width / im.width, pad.height / im.height);
      ctx.drawImage(im, (pad.width - im.width * s) / 2, (pad.height - im.height * s) / 2, im.width * s, im.height * s);
    }
    ctx.strokeStyle = ctx.fillStyle = "#000";
    ctx.lineWidth = PEN_WIDTH;
    ctx.lineCap = ctx.lineJoin = "round";
    for (const stroke of state.strokes) {
      ctx.beginPath();
      ctx.arc(stroke[0][0], stroke[0][1], PEN_WIDTH / 2, 0, 2 * Math.PI);
      ctx.fill();
      ctx.beginPath();
      ctx.moveTo(stroke[0][0], stroke[0][1]);
      for (const [x, y] of stroke) ctx.lineTo(x, y);
      ctx.stroke();
    }
  }

  function padPoint(event) {
    const rect = pad.getBoundingClientRect();
    return [(event.clientX - rect.left) * pad.width / rect.width, (event.clientY - rect.top) * pad.height / rect.height];
  }

  pad.addEventListener("pointerdown", (event) => {
    if (event.pointerType === "mouse" && event.button !== 0) return;
    event.preventDefault();
    pad.setPointerCapture(event.pointerId);
    state.current = [padPoint(event)];
    state.strokes.push(state.current);
    redraw();
  });
  pad.addEventListener("pointermove", (event) => {
    if (!state.current) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) state.current.push(padPoint(e));
    redraw();
  });
  function endStroke() {
    if (!state.current) return;
    state.current = null;
    predict();
  }
  pad.addEventListener("pointerup", endStroke);
  pad.addEventListener("pointercancel", endStroke);

  function currentImage() {
    if (state.upload && state.strokes.length === 0) return state.upload.url;
    return pad.toDataURL("image/png");
  }

  function resetAnswer(message) {
    state.seq++;
    state.result = state.image = null;
    const p = $("prediction");
    p.textContent = message || state.prompt || "Draw a digit on the pad.";
    delete p.dataset.label;
    $("probabilities").replaceChildren();
    $("input-view").getContext("2d").clearRect(0, 0, 28, 28);
    $("layers").replaceChildren();
    $("step").replaceChildren(el("p", { className: "note", textContent: "Draw a digit, then pick an output position." }));
    resetLearn();
    setStatus("");
  }

  $("clear").addEventListener("click", () => {
    state.targetChosen = false;
    state.strokes = [];
    state.upload = null;
    $("upload").value = "";
    redraw();
    resetAnswer();
  });
  $("undo").addEventListener("click", () => {
    if (state.strokes.length) state.strokes.pop();
    else state.upload = null;
    redraw();
    if (state.strokes.length || state.upload) predict(); else resetAnswer();
  });
  $("upload").addEventListener("change", () => {
    const file = $("upload").files[0];
    if (!file) return;
    if (file.size > 6 * 1024 * 1024) { setStatus(`${file.name} is larger than 6 MB.`, true); return; }
    const reader = new FileReader();
    reader.onload = () => {
      const img = new Image();
      img.onload = () => {
        state.strokes = [];
        state.upload = { url: reader.result, img };
        redraw();
        predict();
      };
      img.onerror = () => setStatus(`${file.name} is not a picture this browser can show.`, true);
      img.src = reader.result;
    };
    reader.readAsDataURL(file);
  });

  // -- predictions ---------------------------------------------------------------------------------------------
  async function predict() {
    if (!state.strokes.length && !state.upload) { resetAnswer(); return; }
    const image = currentImage();
    const seq = ++state.seq;
    setStatus("Thinking…");
    document.body.dataset.busy = "1";
    try {
      const data = await api("/api/predict", { image, model: state.model });
      if (seq !== state.seq) return; // a newer stroke or model has taken over
      state.image = image;
      state.result = data;
      showPrediction(data);
      showInput(data.input);
      showLayers(data.layers);
      setStatus("");
      if (state.step) showStep(state.step, false);
      if (!state.targetChosen || state.target === null || state.target >= data.class_names.length) {
        state.target = data.index;
        state.targetChosen = false;
      }
      showTargets();
      learn();
    } catch (err) {
      if (seq !== state.seq) return;
      resetAnswer("No answer: " + err.message);
      setStatus(err.message, true);
    } finally {
      if (seq === state.seq) delete document.body.dataset.busy;
    }
  }

  function showPrediction(data) {
    const p = data.probabilities;
    const p0 = $("prediction");
    p0.replaceChildren(el("span", { className: "label", textContent: data.label }),
      el("span", { className: "confidence", textContent: ` (${(100 * p[data.index]).toFixed(1)}% sure)` }));
    p0.dataset.label = data.label;
    const items = data.class_names.map((name, k) => {
      const fill = el("span", { className: "fill" });
      fill.style.width = `${(100 * p[k]).toFixed(2)}%`;
      const li = el("li", { className: k === data.index ? "best" : "" }, [
        el("span", { className: "name", textContent: name }),
        el("span", { className: "bar" }, [fill]),
        el("span", { className: "value", textContent: `${(100 * p[k]).toFixed(1)}%` }),
      ]);
      li.dataset.label = name;
      li.dataset.probability = String(p[k]);
      li.setAttribute("aria-label", `${name}: ${(100 * p[k]).toFixed(1)} percent`);
      return li;
    });
    $("probabilities").replaceChildren(...items);
  }

  function showInput(input) {
    const [c, h, w] = input.shape;
    const view = $("input-view");
    view.width = w; view.height = h;
    const g = view.getContext("2d");
    const img = g.createImageData(w, h);
    for (let k = 0; k < h * w; k++) {
      const rgb = c === 3 ? [input.pixels[k], input.pixels[h * w + k], input.pixels[2 * h * w + k]] : [input.pixels[k], input.pixels[k], input.pixels[k]];
      img.data.set([rgb[0], rgb[1], rgb[2], 255], 4 * k);
    }
    g.putImageData(img, 0, 0);
  }

  function layerTitle(layer) {
    const c = layer.config;
    const k = (v) => (Array.isArray(v) ? v.join("×") : `${v}×${v}`);
    if (layer.name === "Conv2D") return `Conv2D ${c.in_channels}→${c.out_channels}, ${k(c.kernel_size)}` + (c.padding && c.padding !== 0 ? `, padding ${c.padding}` : "");
    if (layer.name === "Dense") return `Dense ${c.in_features}→${c.out_features}`;
    if (layer.name === "MaxPool2D" || layer.name === "AvgPool2D") return `${layer.name} ${k(c.kernel_size)}`;
    return layer.name;
  }

  function showLayers(layers) {
    $("layers").replaceChildren(...layerBlocks(layers, false));
  }

  // One block per layer: its output (or, with `gradient`, the loss gradient at its output) as maps or a vector.
  function layerBlocks(layers, gradient) {
    const described = state.description.layers;
    return layers.map((act) => {
      const info = described[act.index];
      const values = decode(act);
      const head = el("div", { className: "layer-head" }, [
        el("h3", { textContent: `${act.index + 1}. ${layerTitle(info)}` }),
        el("span", { className: "shape", textContent: (gradient ? "∂L/∂output " : "output ") + act.shape.join("×") }),
        colourBar(act.scale),
      ]);
      if (act.shown < act.total) head.append(el("span", { className: "cut", textContent: `${act.shown} of ${act.total} shown` }));
      const body = act.kind === "maps" ? mapsOf(act, values, info, gradient) : vectorOf(act, values, info, gradient);
      const block = el("div", { className: "layer" }, [head, body]);
      block.dataset.index = act.index;
      return block;
    });
  }

  function mapsOf(act, values, info, gradient) {
    const [, h, w] = act.shape;
    const figures = [];
    for (let ch = 0; ch < act.shown; ch++) {
      const canvas = heatCanvas(values, ch * h * w, h, w, act.scale);
      canvas.setAttribute("aria-label", `${gradient ? "loss gradient at " : ""}channel ${ch} of layer ${act.index + 1}`);
      canvas.dataset.channel = ch;
      if (!gradient && info.name === "Conv2D") {
        canvas.classList.add("pickable");
        canvas.title = "click a pixel to see how it was computed";
        canvas.addEventListener("click", (event) => {
          const rect = canvas.getBoundingClientRect();
          const row = Math.min(h - 1, Math.floor((event.clientY - rect.top) * h / rect.height));
          const col = Math.min(w - 1, Math.floor((event.clientX - rect.left) * w / rect.width));
          showStep({ layer: act.index, channel: ch, row, col }, true);
        });
      }
      figures.push(el("figure", {}, [canvas, el("figcaption", { textContent: `ch ${ch}` })]));
    }
    return el("div", { className: "maps" }, figures);
  }

  function vectorOf(act, values, info, gradient) {
    const n = act.shown;
    const cols = n <= 32 ? n : Math.ceil(Math.sqrt(n));
    const rows = Math.ceil(n / cols);
    const padded = new Float32Array(rows * cols);
    padded.set(values);
    const canvas = heatCanvas(padded, 0, rows, cols, act.scale);
    canvas.classList.add("vector");
    const cell = n <= 32 ? 22 : Math.max(3, Math.floor(220 / cols));
    canvas.style.width = `${cols * cell}px`;
    canvas.setAttribute("aria-label", `${act.total} ${gradient ? "loss gradients" : "values"} of layer ${act.index + 1}`);
    const parts = [canvas];
    if (n <= 32) {
      const names = act.index === state.description.layers.length - 1 && state.result ? state.result.class_names : null;
      parts.push(el("div", { className: "sums", textContent: Array.from(values, (v, k) => `${names ? names[k] : k}: ${fmt(v, 2)}`).join("  ") }));
    }
    return el("div", { className: "maps" }, [el("div", {}, parts)]);
  }

  function showFilters(filters) {
    if (!filters) { $("filters").replaceChildren(el("p", { className: "note", textContent: "This model has no convolution." })); return; }
    const [f, c, kh, kw] = filters.shape;
    const values = decode(filters);
    const scale = values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const figures = [];
    for (let k = 0; k < f; k++) {
      const canvas = heatCanvas(values, k * c * kh * kw, kh, kw, scale); // input channel 0 of each filter
      canvas.setAttribute("aria-label", `filter ${k}`);
      figures.push(el("figure", {}, [canvas, el("figcaption", { textContent: `filter ${k}` })]));
    }
    const note = [];
    if (filters.total > f) note.push(el("p", { className: "note", textContent: `${f} of ${filters.total} shown` }));
    if (c > 1) note.push(el("p", { className: "note", textContent: `input channel 0 of ${c} shown` }));
    $("filters").replaceChildren(el("div", { className: "scale-row" }, [colourBar(scale)]), ...figures, ...note);
  }

  // -- one convolution, step by step ---------------------------------------------------------------------
  function grid(matrix, caption, scale) {
    const rows = matrix.map((row) => el("tr", {}, row.map((v) => {
      const td = el("td", { textContent: fmt(v, 3) });
      const c = colour(v, scale);
      td.style.background = `rgb(${c[0]},${c[1]},${c[2]})`;
      if (Math.abs(v) > 0.6 * scale) td.style.color = "#fff";
      return td;
    })));
    return el("table", { className: "grid" }, [el("caption", { textContent: caption }), ...rows]);
  }

  // A map drawn pixel by pixel at `zoom`, with a rectangle [top, left, height, width] outlined on it.
  function markedCanvas(colourAt, h, w, box, zoom) {
    const canvas = el("canvas", { width: w * zoom, height: h * zoom });
    const g = canvas.getContext("2d");
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const rgb = colourAt(r * w + c);
        g.fillStyle = `rgb(${rgb[0]},${rgb[1]},${rgb[2]})`;
        g.fillRect(c * zoom, r * zoom, zoom, zoom);
      }
    }
    g.strokeStyle = "#f0a500";
    g.lineWidth = 2;
    g.strokeRect(box[1] * zoom - 1, box[0] * zoom - 1, box[3] * zoom + 2, box[2] * zoom + 2);
    return canvas;
  }

  function whereFigures(s) { // the window on the layer's input (channel 0) and the pixel on its output map
    const figures = [];
    const zoom = (h) => Math.max(2, Math.floor(168 / h));
    const box = [s.window_origin[0], s.window_origin[1], s.kernel_size[0], s.kernel_size[1]];
    if (s.layer === 0) {
      const [, h, w] = state.result.input.shape;
      const px = state.result.input.pixels;
      figures.push(el("figure", {}, [markedCanvas((k) => [px[k], px[k], px[k]], h, w, box, zoom(h)),
        el("figcaption", { textContent: "the input, with the window" })]));
    } else {
      const prev = state.result.layers[s.layer - 1];
      if (prev.kind === "maps") {
        const [, h, w] = prev.shape;
        const v = decode(prev);
        figures.push(el("figure", {}, [markedCanvas((k) => colour(v[k], prev.scale), h, w, box, zoom(h)),
          el("figcaption", { textContent: `layer ${s.layer} output, channel 0, with the window` })]));
      }
    }
    const out = state.result.layers[s.layer];
    if (s.channel < out.shown) {
      const [, h, w] = out.shape;
      const v = decode(out);
      const off = s.channel * h * w;
      figures.push(el("figure", {}, [markedCanvas((k) => colour(v[off + k], out.scale), h, w, [s.row, s.col, 1, 1], zoom(h)),
        el("figcaption", { textContent: `output channel ${s.channel}, the pixel computed` })]));
    }
    return el("div", { className: "step-where" }, figures);
  }

  function absMax(nested) {
    return nested.flat(3).reduce((m, v) => Math.max(m, Math.abs(v)), 0) || 1;
  }

  function fillStepForm() {
    const select = $("step-layer");
    const convs = state.description.conv_layers;
    select.replaceChildren(...convs.map((i) => el("option", { value: i, textContent: `${i + 1}. ${layerTitle(state.description.layers[i])}` })));
    $("step-form").hidden = convs.length === 0;
  }

  async function showStep(where, scroll) {
    if (!state.image) { setStatus("Draw a digit first.", true); return; }
    const shape = state.description.layers[where.layer].output_shape;
    if (where.channel >= shape[0] || where.row >= shape[1] || where.col >= shape[2]) {
      where = { layer: where.layer, channel: Math.min(where.channel, shape[0] - 1), row: Math.min(where.row, shape[1] - 1), col: Math.min(where.col, shape[2] - 1) };
    }
    state.step = where;
    $("step-layer").value = where.layer;
    $("step-channel").value = where.channel; $("step-channel").max = shape[0] - 1;
    $("step-row").value = where.row; $("step-row").max = shape[1] - 1;
    $("step-col").value = where.col; $("step-col").max = shape[2] - 1;
    const seq = state.seq;
    try {
      const step = await api("/api/conv-step", { image: state.image, model: state.model, ...where });
      if (seq !== state.seq) return;
      renderStep(step);
      if (scroll) $("step-panel").scrollIntoView({ behavior: "smooth", block: "start" });
    } catch (err) {
      setStatus(err.message, true);
    }
  }

  function outside(s) { // whether the window reaches into the zero padding
    const [, h, w] = s.input_shape, [top, left] = s.window_origin, [kh, kw] = s.kernel_size;
    return top < 0 || left < 0 || top + kh > h || left + kw > w;
  }

  function renderStep(s) {
    const C = s.window.length;
    const wScale = absMax(s.window), kScale = absMax(s.kernel), pScale = absMax(s.products);
    const shown = Math.min(C, 3);
    const triplets = [];
    for (let k = 0; k < shown; k++) {
      triplets.push(el("div", { className: "step-triplet" }, [
        grid(s.window[k], C > 1 ? `input window, channel ${k}` : "input window", wScale),
        el("span", { className: "op", textContent: "×" }),
        grid(s.kernel[k], C > 1 ? `kernel, channel ${k}` : "kernel", kScale),
        el("span", { className: "op", textContent: "=" }),
        grid(s.products[k], `products (sum ${fmt(s.channel_sums[k])})`, pScale),
      ]));
    }
    const parts = [
      el("p", { textContent: `Layer ${s.layer + 1}, output channel ${s.channel}, row ${s.row}, column ${s.col}: the ${s.kernel_size.join("×")} window whose top-left corner is at input row ${s.window_origin[0]}, column ${s.window_origin[1]}` + (outside(s) ? "; it reaches past the edge, where the zero padding is" : "") + "." }),
      whereFigures(s),
      el("div", { className: "step-channels" }, triplets),
    ];
    if (C > shown) {
      parts.push(el("p", { className: "sums", textContent: `…and ${C - shown} more input channels. Sum of each channel's products: ` + s.channel_sums.map((v, k) => `${k}: ${fmt(v, 3)}`).join(", ") }));
    }
    const diff = Math.abs(s.output - s.layer_value);
    const ok = diff <= 1e-4 * Math.max(1, Math.abs(s.layer_value));
    const eq = el("div", { className: "equation" }, [
      el("div", {}, ["sum of all products = ", el("span", { id: "step-sum", textContent: fmt(s.sum, 6) })]),
      el("div", {}, ["+ bias = ", el("span", { id: "step-bias", textContent: fmt(s.bias, 6) }),
        s.has_bias ? "" : " (this convolution has no bias: the batch norm after it would cancel one)"]),
      el("div", {}, ["= output ", el("strong", { id: "step-output", textContent: fmt(s.output, 6) })]),
      el("div", {}, ["the layer itself computed ", el("span", { id: "step-layer-value", textContent: fmt(s.layer_value, 6) }), " ",
        el("span", { className: ok ? "match" : "mismatch", textContent: ok ? `✓ equal (difference ${diff.toExponential(1)})` : `✗ differs by ${diff.toExponential(2)}` })]),
    ]);
    eq.querySelector("#step-sum").dataset.value = String(s.sum);
    eq.querySelector("#step-bias").dataset.value = String(s.bias);
    eq.querySelector("#step-output").dataset.value = String(s.output);
    eq.querySelector("#step-layer-value").dataset.value = String(s.layer_value);
    let previous = s.layer_value;
    for (const next of s.then) {
      const text = next.name === "ReLU" ? `then ReLU: max(0, ${fmt(previous, 4)}) = ${fmt(next.value, 6)}` : `then ${next.name}: ${fmt(next.value, 6)}`;
      eq.append(el("div", { className: "then", textContent: text }));
      previous = next.value;
    }
    parts.push(eq);
    $("step").replaceChildren(...parts);
  }

  $("step-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const where = { layer: Number($("step-layer").value), channel: Number($("step-channel").value), row: Number($("step-row").value), col: Number($("step-col").value) };
    showStep(where, false);
  });

  // -- how it learns ---------------------------------------------------------------------------------------
  // The label the network should have said (state.target): the prediction until the user picks one, which
  // then stays chosen for the next strokes (it is the digit being drawn) until Clear.
  function firstConv() {
    return state.description && state.description.filters ? state.description.filters.layer : null;
  }

  function className(k) {
    return state.result ? state.result.class_names[k] : String(k);
  }

  function absMaxOf(values, start, stop) {
    let m = 0;
    for (let k = start || 0; k < (stop === undefined ? values.length : stop); k++) m = Math.max(m, Math.abs(values[k]));
    return m;
  }

  function resetLearn() {
    delete document.body.dataset.learning;
    state.grads = null;
    $("targets").replaceChildren();
    $("loss").textContent = "Draw a digit on the pad.";
    delete $("loss").dataset.value;
    delete $("learn-panel").dataset.target;
    $("filter-grads").replaceChildren();
    $("layer-grads").replaceChildren();
    $("sgd").replaceChildren();
    $("wgrad").replaceChildren(el("p", { className: "note", textContent: "Draw a digit, then click a weight of a filter." }));
  }

  function showTargets() { // one radio button per class, the chosen one checked, the network's answer marked
    const chips = state.result.class_names.map((name, k) => {
      const input = el("input", { type: "radio", name: "target", value: String(k), checked: k === state.target });
      input.addEventListener("change", () => {
        state.target = k;
        state.targetChosen = true;
        learn();
      });
      const predicted = k === state.result.index;
      return el("label", { className: predicted ? "predicted" : "", title: predicted ? "the network's answer" : "" },
        [input, el("span", { textContent: name })]);
    });
    $("targets").replaceChildren(...chips);
  }

  async function learn() {
    if (!state.result) return;
    const seq = state.seq, target = state.target;
    document.body.dataset.learning = "1";
    try {
      const g = await api("/api/gradients", { image: state.image, model: state.model, target });
      if (seq !== state.seq || target !== state.target) return;
      state.grads = g;
      showLoss(g);
      showFilterGrads(g);
      $("layer-grads").replaceChildren(...layerBlocks(g.layer_grads, true));
      $("sgd").replaceChildren(el("p", { className: "note", textContent: `Take a step to see what changes when the network learns that this drawing is “${className(target)}”.` }));
      $("learn-panel").dataset.target = String(target);
      if (state.weight) await showWeightGrad(state.weight, false);
    } catch (err) {
      if (seq === state.seq) setStatus(err.message, true);
    } finally {
      if (seq === state.seq && target === state.target) delete document.body.dataset.learning;
    }
  }

  function showLoss(g) {
    const p = g.probabilities[g.target];
    const value = el("strong", { id: "loss-value", textContent: fmt(g.loss, 4) });
    value.dataset.value = String(g.loss);
    $("loss").replaceChildren(`Loss for “${className(g.target)}”: L = −log p(“${className(g.target)}”) = −log ${fmt(p, 4)} = `, value);
    $("loss").dataset.value = String(g.loss);
  }

  function pickWeight(canvas, kh, kw, where) { // a click on a kernel drawn kh x kw picks that weight
    canvas.classList.add("pickable");
    canvas.title = "click a weight to see its gradient computed";
    canvas.addEventListener("click", (event) => {
      const rect = canvas.getBoundingClientRect();
      const row = Math.min(kh - 1, Math.floor((event.clientY - rect.top) * kh / rect.height));
      const col = Math.min(kw - 1, Math.floor((event.clientX - rect.left) * kw / rect.width));
      showWeightGrad({ ...where, row, col }, true);
    });
  }

  function showFilterGrads(g) { // each first-layer filter (input channel 0) above its gradient dL/dw
    const conv = firstConv();
    if (conv === null) { $("filter-grads").replaceChildren(el("p", { className: "note", textContent: "This model has no convolution." })); return; }
    const filters = state.description.filters;
    const [f, c, kh, kw] = filters.shape;
    const size = c * kh * kw;
    const weights = decode(filters), grads = decode(g.param_grads[`${conv}.weight`]);
    const wScale = absMaxOf(weights), gScale = absMaxOf(grads, 0, f * size);
    const figures = [];
    for (let k = 0; k < f; k++) {
      const wc = heatCanvas(weights, k * size, kh, kw, wScale);
      const gc = heatCanvas(grads, k * size, kh, kw, gScale);
      wc.setAttribute("aria-label", `filter ${k}`);
      gc.setAttribute("aria-label", `loss gradient of filter ${k}`);
      gc.dataset.filter = wc.dataset.filter = k;
      pickWeight(wc, kh, kw, { layer: conv, filter: k, in_channel: 0 });
      pickWeight(gc, kh, kw, { layer: conv, filter: k, in_channel: 0 });
      const figure = el("figure", {}, [wc, gc, el("figcaption", { textContent: `filter ${k}` })]);
      figure.dataset.filter = k;
      figures.push(figure);
    }
    const scales = el("div", { className: "scale-row" }, ["weights ", colourBar(wScale), "  ∂L/∂w ", colourBar(gScale)]);
    const notes = [];
    if (filters.total > f) notes.push(el("p", { className: "note", textContent: `${f} of ${filters.total} shown` }));
    if (c > 1) notes.push(el("p", { className: "note", textContent: `input channel 0 of ${c} shown` }));
    $("filter-grads").replaceChildren(scales, ...figures, ...notes);
    markWeight();
  }

  function markWeight() { // outline the filter whose weight the step view shows
    const w = state.weight;
    for (const figure of $("filter-grads").querySelectorAll("figure")) {
      figure.classList.toggle("selected", Boolean(w) && w.layer === firstConv() && Number(figure.dataset.filter) === w.filter);
    }
  }

  // -- one SGD step --
  async function sgdStep() {
    if (!state.result) { setStatus("Draw a digit first.", true); return; }
    const seq = state.seq, target = state.target;
    document.body.dataset.stepping = "1";
    try {
      const s = await api("/api/sgd-step", { image: state.image, model: state.model, target, lr: Number($("lr").value) });
      if (seq !== state.seq || target !== state.target) return;
      renderSgd(s);
      setStatus("");
    } catch (err) {
      setStatus(err.message, true);
      $("sgd").replaceChildren(el("p", { className: "note error", textContent: err.message }));
    } finally {
      delete document.body.dataset.stepping;
    }
  }

  function valueSpan(id, v, digits) {
    const span = el("strong", { id, textContent: fmt(v, digits) });
    span.dataset.value = String(v);
    return span;
  }

  function renderSgd(s) {
    const name = className(s.target);
    const parts = [
      el("p", { className: "sgd-loss" }, [`After one step with learning rate ${s.lr}, the loss for “${name}” goes from `,
        valueSpan("sgd-loss-before", s.before.loss, 4), " to ", valueSpan("sgd-loss-after", s.after.loss, 4), "."]),
      el("p", { className: "note" }, ["Probabilities:", el("span", { className: "legend-before" }), "before",
        el("span", { className: "legend-after" }), "after the step"]),
      el("ol", { id: "sgd-probs", ariaLabel: "Probability of each class before and after the step" }, s.before.probabilities.map((p0, k) => {
        const p1 = s.after.probabilities[k];
        const bar = (p, cls) => {
          const fill = el("span", { className: "fill" });
          fill.style.width = `${(100 * p).toFixed(2)}%`;
          return el("span", { className: `bar ${cls}` }, [fill]);
        };
        const li = el("li", { className: k === s.target ? "target" : "" }, [
          el("span", { className: "name", textContent: className(k) }),
          el("span", { className: "bars" }, [bar(p0, "before"), bar(p1, "after")]),
          el("span", { className: "value", textContent: `${(100 * p0).toFixed(1)}% → ${(100 * p1).toFixed(1)}%` }),
        ]);
        li.dataset.label = className(k);
        li.dataset.before = String(p0);
        li.dataset.after = String(p1);
        return li;
      })),
    ];
    if (s.filters) parts.push(sgdFilters(s.filters));
    parts.push(updatesTable(s.updates));
    $("sgd").replaceChildren(...parts);
  }

  function sgdFilters(filters) { // rows: the filters before, after, and the change on its own colour scale
    const [f, c, kh, kw] = filters.before.shape;
    const size = c * kh * kw, shown = Math.min(f, 16);
    const before = decode(filters.before), delta = decode(filters.delta);
    const after = before.map((v, k) => v + delta[k]);
    const wScale = Math.max(absMaxOf(before), absMaxOf(after)), dScale = absMaxOf(delta);
    const grid = el("div", { className: "sgd-filters" });
    grid.style.setProperty("--filters", String(shown));
    for (const [label, values, scale] of [["before", before, wScale], ["after", after, wScale], ["change", delta, dScale]]) {
      grid.append(el("span", { textContent: label }));
      for (let k = 0; k < shown; k++) {
        const canvas = heatCanvas(values, k * size, kh, kw, scale);
        canvas.setAttribute("aria-label", `filter ${k} ${label === "change" ? "change" : label + " the step"}`);
        canvas.dataset.filter = k;
        grid.append(canvas);
      }
    }
    const ratio = wScale > 0 ? ` (${(100 * dScale / absMaxOf(before)).toPrecision(2)}% of the largest weight)` : "";
    return el("div", { className: "sgd-filters-block" }, [
      el("h3", { textContent: `First-layer filters, before and after the step${shown < filters.total ? ` (${shown} of ${filters.total} shown)` : ""}` }),
      grid,
      el("p", { className: "note" }, [`The change is drawn on its own colour scale: the largest change of a first-layer weight is ${fmt(dScale, 4)}${ratio}. `,
        colourBar(dScale)]),
    ]);
  }

  function updatesTable(updates) { // how far the step moved each parameter, next to its size
    const rows = updates.map((u) => el("tr", {}, [
      el("td", { textContent: u.name }), el("td", { textContent: fmt(u.norm, 4) }), el("td", { textContent: fmt(u.update_norm, 4) }),
      el("td", { textContent: u.norm > 0 ? fmt(u.update_norm / u.norm, 4) : "–" }),
    ]));
    const head = el("tr", {}, ["parameter", "‖w‖", "‖Δw‖", "‖Δw‖ / ‖w‖"].map((t) => el("th", { textContent: t })));
    return el("table", { className: "updates" }, [el("caption", { className: "note", textContent: "The size of each parameter's update next to its own size" }), head, ...rows]);
  }

  $("sgd-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sgdStep();
  });

  // -- one weight's gradient, step by step: the backward twin of the convolution step --
  function kernelShape(layer) { // [out_channels, in_channels, kh, kw] of a Conv2D from its description
    const c = state.description.layers[layer].config;
    const k = Array.isArray(c.kernel_size) ? c.kernel_size : [c.kernel_size, c.kernel_size];
    return [c.out_channels, c.in_channels, k[0], k[1]];
  }

  function fillWeightForm() {
    const convs = state.description.conv_layers;
    $("wgrad-layer").replaceChildren(...convs.map((i) => el("option", { value: i, textContent: `${i + 1}. ${layerTitle(state.description.layers[i])}` })));
    $("wgrad-form").hidden = convs.length === 0;
  }

  async function showWeightGrad(where, scroll) {
    if (!state.result) { setStatus("Draw a digit first.", true); return; }
    const shape = kernelShape(where.layer);
    const keys = ["filter", "in_channel", "row", "col"];
    where = { layer: where.layer, ...Object.fromEntries(keys.map((key, a) => [key, Math.max(0, Math.min(where[key], shape[a] - 1))])) };
    state.weight = where;
    $("wgrad-layer").value = where.layer;
    keys.forEach((key, a) => {
      const input = $(key === "in_channel" ? "wgrad-channel" : `wgrad-${key}`);
      input.value = where[key];
      input.max = shape[a] - 1;
    });
    markWeight();
    const seq = state.seq, target = state.target;
    try {
      const s = await api("/api/weight-gradient", { image: state.image, model: state.model, target, ...where });
      if (seq !== state.seq || target !== state.target) return;
      renderWeightGrad(s);
      if (scroll) $("wgrad").scrollIntoView({ behavior: "smooth", block: "center" });
    } catch (err) {
      setStatus(err.message, true);
    }
  }

  function mapFigure(values, h, w, caption, label) {
    const scale = absMaxOf(values);
    const canvas = heatCanvas(values, 0, h, w, scale);
    const zoom = Math.max(2, Math.floor(150 / Math.max(h, w)));
    canvas.style.width = `${w * zoom}px`;
    canvas.style.height = `${h * zoom}px`;
    canvas.setAttribute("aria-label", label);
    return el("figure", {}, [canvas, el("figcaption", { textContent: caption }), colourBar(scale)]);
  }

  function renderWeightGrad(s) {
    const [h, w] = s.output_shape, [sh, sw] = s.stride, [ph, pw] = s.padding;
    const dy = decode(s.output_grad), x = decode(s.inputs), products = decode(s.products);
    const at = (stride, v, offset, pad) => { // the input index "s·r + i − p" the weight meets, written out
      const shift = offset - pad;
      return `${stride === 1 ? "" : stride}${v}` + (shift === 0 ? "" : shift > 0 ? ` + ${shift}` : ` − ${-shift}`);
    };
    const layerNo = s.layer + 1;
    const terms = Array.from(products, (v, k) => k).sort((a, b) => Math.abs(products[b]) - Math.abs(products[a])).slice(0, 6);
    const table = el("table", { className: "grid" }, [
      el("caption", { textContent: "the largest terms of the sum" }),
      el("tr", {}, ["row, column", "∂L/∂y", "input", "product"].map((t) => el("th", { textContent: t }))),
      ...terms.map((k) => el("tr", {}, [el("td", { textContent: `${Math.floor(k / w)}, ${k % w}` }),
        el("td", { textContent: fmt(dy[k], 4) }), el("td", { textContent: fmt(x[k], 4) }), el("td", { textContent: fmt(products[k], 4) })])),
    ]);
    const diff = Math.abs(s.sum - s.layer_value);
    const ok = diff <= 1e-4 * Math.max(1, Math.abs(s.layer_value));
    const lr = Number($("lr").value);
    const eq = el("div", { className: "equation" }, [
      el("div", {}, [`sum of all ${h}×${w} = ${h * w} products = `, valueSpan("wgrad-sum", s.sum, 6)]),
      el("div", {}, ["the layer's own backward computed ∂L/∂w = ", valueSpan("wgrad-layer-value", s.layer_value, 6), " ",
        el("span", { className: ok ? "match" : "mismatch", textContent: ok ? `✓ equal (difference ${diff.toExponential(1)})` : `✗ differs by ${diff.toExponential(2)}` })]),
    ]);
    if (s.has_bias) {
      eq.append(el("div", { className: "then", textContent: `and the bias of filter ${s.filter}: ∂L/∂b = the sum of ∂L/∂y alone = ${fmt(s.bias_sum, 6)} (backward: ${fmt(s.bias_layer_value, 6)})` }));
    }
    if (lr > 0) {
      eq.append(el("div", { className: "then", textContent: `one SGD step with learning rate ${lr} moves this weight from ${fmt(s.weight, 5)} to ${fmt(s.weight, 5)} − ${lr} × ${fmt(s.layer_value, 5)} = ${fmt(s.weight - lr * s.layer_value, 5)}` }));
    }
    $("wgrad").replaceChildren(
      el("p", { textContent: `Layer ${layerNo}, filter ${s.filter}, input channel ${s.in_channel}, the weight at row ${s.row}, column ${s.col} (w = ${fmt(s.weight, 5)}), for the label “${className(s.target)}”. ` +
        `This weight met the input at every one of the ${h}×${w} output positions, so its gradient is the sum over them: ` +
        `∂L/∂w = Σ over (r, c) of ∂L/∂y[r, c] × x[${at(sh, "r", s.row, ph)}, ${at(sw, "c", s.col, pw)}].` }),
      el("div", { className: "wgrad-maps" }, [
        mapFigure(dy, h, w, `∂L/∂y: the loss gradient at output channel ${s.filter} of layer ${layerNo}`, "output gradient"),
        el("span", { className: "op", textContent: "×" }),
        mapFigure(x, h, w, `x: the input value (channel ${s.in_channel}) this weight met at each output position`, "input under the weight"),
        el("span", { className: "op", textContent: "=" }),
        mapFigure(products, h, w, "their products, one per output position", "products"),
      ]),
      table, eq,
    );
  }

  $("wgrad-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const where = { layer: Number($("wgrad-layer").value), filter: Number($("wgrad-filter").value), in_channel: Number($("wgrad-channel").value), row: Number($("wgrad-row").value), col: Number($("wgrad-col").value) };
    showWeightGrad(where, false);
  });

  // -- train it yourself -------------------------------------------------------------------------------------
  // POST /api/train starts a training in the server; the page asks GET /api/train/status every TRAIN_POLL_MS
  // until it ends, and redraws the progress, the two curves, the filters and, at the end, the test accuracy.
  const TRAIN_POLL_MS = 300;
  const LR_DEFAULTS = { sgd: 0.1, adam: 0.001 };
  const TRAIN_INPUTS = { "train-batch": "batch_size", "train-epochs": "epochs", "train-images": "images" };
  const training = { id: null, timer: null, filtersDrawn: null, resultShown: null };

  function trainSettings() {
    return {
      model: $("train-model").value, optimizer: $("train-optimizer").value, lr: Number($("train-lr").value),
      batch_size: Number($("train-batch").value), epochs: Number($("train-epochs").value), images: Number($("train-images").value),
    };
  }

  function trainMessage(text, isError) {
    $("train-state").textContent = text;
    $("train-state").classList.toggle("error", Boolean(isError));
  }

  function niceCeil(v) { // a round number (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten) at least v
    if (!(v > 0)) return 1;
    const p = 10 ** Math.floor(Math.log10(v));
    return [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10].map((m) => m * p).find((m) => m >= v * (1 - 1e-9));
  }

  // One curve on a canvas: steps 0..opts.steps across, opts.yMin..opts.yMax up, dashed lines at the epochs'
  // ends and, with opts.hline, a horizontal line (the test accuracy).
  function drawChart(canvas, xs, ys, opts) {
    const dpr = Math.min(2, window.devicePixelRatio || 1);
    const W = 440, H = 190, left = 46, right = 12, top = 12, bottom = 30;
    if (canvas.width !== W * dpr) { canvas.width = W * dpr; canvas.height = H * dpr; }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.fillStyle = "#fff";
    g.fillRect(0, 0, W, H);
    const X = (x) => left + (W - left - right) * x / Math.max(1, opts.steps);
    const Y = (y) => top + (H - top - bottom) * (1 - (y - opts.yMin) / (opts.yMax - opts.yMin));
    g.font = "11px system-ui, sans-serif";
    g.lineWidth = 1;
    for (let k = 0; k <= 4; k++) { // grid lines and their values
      const v = opts.yMin + (opts.yMax - opts.yMin) * k / 4;
      g.strokeStyle = "#e3e7ec";
      g.beginPath(); g.moveTo(left, Y(v)); g.lineTo(W - right, Y(v)); g.stroke();
      g.fillStyle = "#5b6673"; g.textAlign = "right"; g.textBaseline = "middle";
      g.fillText(opts.percent ? `${Math.round(100 * v)}%` : fmt(v, 2), left - 5, Y(v));
    }
    g.textAlign = "center"; g.textBaseline = "top";
    g.fillText("0", X(0), H - bottom + 5);
    g.fillText(String(opts.steps), X(opts.steps) - 8, H - bottom + 5);
    g.fillText("step", (left + W - right) / 2, H - bottom + 5);
    g.strokeStyle = "#aab4c0";
    g.setLineDash([3, 3]);
    for (let e = 1; e < opts.epochs; e++) {
      const x = X(e * opts.perEpoch);
      g.beginPath(); g.moveTo(x, top); g.lineTo(x, H - bottom); g.stroke();
      g.textBaseline = opts.epochLabels === "top" ? "top" : "bottom";
      g.fillText(`epoch ${e + 1}`, x + 24, opts.epochLabels === "top" ? top + 2 : H - bottom - 2);
    }
    if (opts.hline !== null) {
      g.strokeStyle = "#1f7a3a"; g.lineWidth = 1.5;
      g.beginPath(); g.moveTo(left, Y(opts.hline)); g.lineTo(W - right, Y(opts.hline)); g.stroke();
    }
    g.setLineDash([]);
    g.strokeStyle = g.fillStyle = opts.colour;
    g.lineWidth = 2;
    g.beginPath();
    xs.forEach((x, k) => (k ? g.lineTo(X(x), Y(ys[k])) : g.moveTo(X(x), Y(ys[k]))));
    g.stroke();
    if (xs.length) { g.beginPath(); g.arc(X(xs[xs.length - 1]), Y(ys[ys.length - 1]), 3, 0, 2 * Math.PI); g.fill(); }
    if (opts.hline !== null) { // its label on the left, over the curve, in a white box
      const label = `test ${(100 * opts.hline).toFixed(1)}%`, width = g.measureText(label).width;
      g.fillStyle = "rgba(255, 255, 255, 0.92)";
      g.fillRect(left + 4, Y(opts.hline) + 3, width + 6, 15);
      g.fillStyle = "#1f7a3a"; g.textAlign = "left"; g.textBaseline = "top";
      g.fillText(label, left + 7, Y(opts.hline) + 5);
    }
    canvas.dataset.points = String(xs.length);
    canvas.dataset.last = xs.length ? String(ys[ys.length - 1]) : "";
    canvas.setAttribute("aria-label", `${opts.name}: ` + (xs.length ? `${fmt(ys[0], 3)} at step ${xs[0]}, ${fmt(ys[ys.length - 1], 3)} at step ${xs[xs.length - 1]} of ${opts.steps}` : "no steps yet"));
  }

  function drawCurves(s) {
    $("train-loss-every").textContent = s.curve_every > 1 ? `each point the mean over ${s.curve_every} batches` : "one point per batch";
    const steps = s.steps || 1, common = { steps, epochs: s.epochs || 1, perEpoch: s.steps_per_epoch || steps };
    const loss = s.curve ? s.curve.loss : [], xs = s.curve ? s.curve.step : [];
    drawChart($("train-loss"), xs, loss, { ...common, name: "Training loss", yMin: 0, yMax: niceCeil(Math.max(0.5, ...loss)), colour: "#b3261e", percent: false, hline: null, epochLabels: "top" });
    drawChart($("train-accuracy"), xs, s.curve ? s.curve.accuracy : [], { ...common, name: "Training accuracy", yMin: 0, yMax: 1, colour: "#2a62b8", percent: true, hline: s.test ? s.test.accuracy : null, epochLabels: "bottom" });
  }

  // The filters at the start above the filters now, on one colour scale, and their change on its own scale.
  function drawTrainFilters(s) {
    const key = `${s.id}:${s.filters_step}:${s.state}`;
    if (!s.filters || !s.initial_filters || training.filtersDrawn === key) return;
    training.filtersDrawn = key;
    const [f, c, kh, kw] = s.filters.shape;
    const size = c * kh * kw, start = decode(s.initial_filters), now = decode(s.filters);
    const change = now.map((v, k) => v - start[k]);
    const scale = Math.max(absMaxOf(start), absMaxOf(now)), dScale = absMaxOf(change);
    const rows = el("div", { className: "train-filter-rows" });
    rows.style.setProperty("--filters", String(f));
    for (const [label, values, when, sc] of [["at the start", start, "at the start", scale], [`step ${s.filters_step}`, now, "now", scale], ["change", change, "change", dScale]]) {
      rows.append(el("span", { textContent: label }));
      for (let k = 0; k < f; k++) {
        const canvas = heatCanvas(values, k * size, kh, kw, sc);
        canvas.setAttribute("aria-label", `filter ${k} ${when}`);
        canvas.dataset.filter = k;
        rows.append(canvas);
      }
    }
    const notes = [el("div", { className: "scale-row" }, ["weights ", colourBar(scale), "  change ", colourBar(dScale)])];
    if (c > 1) notes.push(el("p", { className: "note", textContent: `input channel 0 of ${c} shown` }));
    if (s.filters.total > f) notes.push(el("p", { className: "note", textContent: `${f} of ${s.filters.total} shown` }));
    $("train-filters").replaceChildren(rows, ...notes);
    $("train-filters").dataset.step = String(s.filters_step);
    $("train-filters").dataset.run = String(s.id);
  }

  function trainStateText(s) {
    const time = `${(s.seconds || 0).toFixed(1)} s`;
    if (s.state === "starting") return "Starting: reading MNIST and building the network…";
    if (s.state === "training") return `Epoch ${s.epoch + 1} of ${s.epochs}, step ${s.step} of ${s.steps}, ${time}` + (s.cancel_requested ? " (cancelling…)" : "");
    if (s.state === "testing") return `Trained in ${s.steps} steps; now testing on MNIST's 10,000 test images…`;
    if (s.state === "done") return `Done: ${s.steps} steps in ${time}.`;
    if (s.state === "cancelled") return `${s.message} (after ${s.step} of ${s.steps} steps)`;
    if (s.state === "failed") return `Failed: ${s.message}`;
    return "No training yet.";
  }

  function showTrainResult(s) {
    const key = `${s.id}:${s.state}`;
    if (training.resultShown === key) return;
    training.resultShown = key;
    if (s.state !== "done") { $("train-result").replaceChildren(); return; }
    const acc = el("span", { className: "accuracy", id: "train-test-accuracy", textContent: `${(100 * s.test.accuracy).toFixed(2)}%` });
    acc.dataset.value = String(s.test.accuracy);
    const use = el("button", { type: "button", id: "train-use", textContent: "Draw with it" });
    use.addEventListener("click", () => {
      $("model").value = s.model;
      chooseModel(s.model).then(() => $("draw-panel").scrollIntoView({ behavior: "smooth", block: "start" }))
        .catch((err) => setStatus(err.message, true));
    });
    const rows = s.history.map((h) => el("tr", {}, [h.epoch, fmt(h.loss, 4), `${(100 * h.accuracy).toFixed(2)}%`, `${h.seconds.toFixed(1)} s`].map((t) => el("td", { textContent: String(t) }))));
    const head = el("tr", {}, ["epoch", "training loss", "training accuracy", "time"].map((t) => el("th", { textContent: t })));
    $("train-result").replaceChildren(
      el("p", {}, ["Test accuracy: ", acc, ` on MNIST's ${s.test.images.toLocaleString("en")} test images, which the training never saw. ` +
        `The network is in the Model list as “${s.model_title}”. `, use]),
      el("table", { className: "updates" }, [head, ...rows]),
    );
    $("train-result").dataset.model = s.model;
  }

  function showTraining(s) {
    training.id = s.id;
    const panel = $("train-panel");
    panel.dataset.state = s.state;
    panel.dataset.step = String(s.step || 0);
    if (s.id !== null) panel.dataset.run = String(s.id);
    if (s.running) document.body.dataset.training = "1"; else delete document.body.dataset.training;
    $("train-start").disabled = s.running;
    $("train-cancel").disabled = !s.running || s.cancel_requested;
    $("train-progress").value = s.state === "done" || s.state === "testing" ? 1 : (s.steps ? s.step / s.steps : 0);
    trainMessage(trainStateText(s), s.state === "failed");
    if (s.id === null) return;
    drawCurves(s);
    drawTrainFilters(s);
    showTrainResult(s);
  }

  function pollTraining() {
    clearTimeout(training.timer);
    training.timer = setTimeout(async () => {
      let s;
      try {
        s = await api("/api/train/status");
      } catch (err) {
        delete document.body.dataset.training;
        trainMessage(`Cannot reach the server: ${err.message}`, true);
        return;
      }
      showTraining(s);
      if (s.running) pollTraining();
      else if (s.state === "done") await refreshModels().catch((err) => setStatus(err.message, true));
    }, TRAIN_POLL_MS);
  }

  async function refreshModels() { // the Model list again, with the new network; the choice stays
    const listing = await api("/api/models");
    const current = $("model").value;
    state.models = listing.models;
    $("model").replaceChildren(...listing.models.map((m) => el("option", { value: m.name, textContent: m.title })));
    if (listing.models.some((m) => m.name === current)) $("model").value = current;
    else { $("model").value = listing.default; await chooseModel(listing.default); }
  }

  $("train-optimizer").addEventListener("change", () => { $("train-lr").value = LR_DEFAULTS[$("train-optimizer").value]; });

  $("train-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      showTraining(await api("/api/train", trainSettings()));
      pollTraining();
    } catch (err) {
      trainMessage(err.message, true);
    }
  });

  $("train-cancel").addEventListener("click", async () => {
    try {
      showTraining(await api("/api/train/cancel", { id: training.id }));
    } catch (err) {
      trainMessage(err.message, true);
    }
  });

  async function startTraining() { // the limits and defaults from the server; a training already running
    const s = await api("/api/train/status");
    for (const [id, key] of Object.entries(TRAIN_INPUTS)) {
      $(id).min = s.limits[key][0];
      $(id).max = s.limits[key][1];
      $(id).value = s.defaults[key];
    }
    $("train-lr").max = s.limits.lr[1];
    $("train-lr").value = s.defaults.lr;
    $("train-model").value = s.defaults.model;
    $("train-optimizer").value = s.defaults.optimizer;
    showTraining(s);
    if (s.running) pollTraining();
  }

  // -- models ------------------------------------------------------------------------------------------------
  async function chooseModel(name) {
    state.model = name;
    state.step = null;
    state.weight = null;
    const description = await api(`/api/model?name=${encodeURIComponent(name)}`);
    if (state.model !== name) return;
    state.description = description;
    const photos = description.style === "photos"; // trained on your own pictures: classify an upload, not a drawing
    document.body.dataset.photos = photos ? "1" : "";
    $("pad").hidden = photos;
    $("undo").hidden = photos;
    $("draw-title").textContent = photos ? "Your picture" : "Draw";
    state.prompt = photos ? `Choose a picture to classify: this model knows ${description.class_names.join(", ")}.` : null;
    if (!state.mnistNote) state.mnistNote = $("input-note").innerHTML; // the page's own text, kept for digit models
    if (photos) {
      const [c, h, w] = description.input_shape;
      $("input-note").textContent = `Your picture as this model was trained to see it: ${c === 3 ? "colour" : "grey"}, ` +
        `resized to ${w}x${h}, the preparation kept in its model file (numpycnn predict does the same).`;
    } else {
      $("input-note").innerHTML = state.mnistNote;
    }
    const acc = description.accuracy ? `, ${(100 * description.accuracy).toFixed(2)}% on MNIST's test set` : "";
    $("model-info").textContent = `${description.parameters.toLocaleString("en")} parameters${acc}`;
    showFilters(description.filters);
    fillStepForm();
    fillWeightForm();
    if (state.strokes.length || state.upload) await predict(); else resetAnswer();
  }

  $("model").addEventListener("change", () => chooseModel($("model").value).catch((err) => setStatus(err.message, true)));

  async function start() {
    redraw();
    const listing = await api("/api/models");
    state.models = listing.models;
    $("model").replaceChildren(...listing.models.map((m) => el("option", { value: m.name, textContent: m.title })));
    $("model").value = listing.default;
    await chooseModel(listing.default);
    await startTraining();
    document.body.dataset.ready = "1";
  }
  start().catch((err) => setStatus("Cannot reach the server: " + err.message, true));
})();
