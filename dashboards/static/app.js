/* Assay dashboard: progressive enhancement of server-rendered pages.
 *
 * - charts: drawn with the vendored Plotly.js, updated in place (Plotly.react);
 * - live updates: each page polls a small JSON feed with an `after` cursor over the audit
 *   trail and swaps in server-rendered fragments when something changed;
 * - tables and filters: links and forms fetch the server's fragment instead of reloading.
 * Everything works without this file, only less conveniently.
 */
(function () {
  "use strict";

  var C = {
    ink: "#1f2937", muted: "#6b7280", grid: "#eef0f3", accent: "#4f46e5", accentSoft: "#c7d2fe",
    model: "#d97706", modelBand: "rgba(217, 119, 6, 0.16)", good: "#059669", bad: "#dc2626",
    infeasible: "#cbd5e1",
  };
  var FONT = '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", ' +
    '"Liberation Sans", Arial, sans-serif';
  var PLOT_CONFIG = {
    displaylogo: false, responsive: true, displayModeBar: "hover",
    modeBarButtonsToRemove: ["lasso2d", "select2d", "autoScale2d", "toggleSpikelines"],
  };

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c];
    });
  }

  // -- formatting (mirrors dashboards/data.py:fmt_value) -------------------------------------
  function fmt(v, digits) {
    digits = digits || 4;
    if (v === null || v === undefined) return "—";
    if (typeof v !== "number") return String(v);
    if (!isFinite(v)) return String(v);
    if (Number.isInteger(v) && Math.abs(v) < 1e15) return Math.abs(v) >= 10000 ? v.toLocaleString("en-US") : String(v);
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e6 || a < 1e-3) {
      var parts = v.toExponential(digits - 1).split("e");
      return parts[0].replace(/\.?0+$/, "") + "e" + Number(parts[1]);
    }
    var dec = Math.max(digits - 1 - Math.floor(Math.log10(a)), 0);
    var s = v.toFixed(dec);
    return s.indexOf(".") >= 0 ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
  }
  function ago(iso) {
    var s = (Date.now() - new Date(iso).getTime()) / 1000;
    if (s < 45) return "just now";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    if (s < 86400) return Math.round(s / 3600) + " h ago";
    return Math.round(s / 86400) + " d ago";
  }
  function refreshTimes(root) {
    $$("time[data-ago]", root).forEach(function (t) { t.textContent = ago(t.getAttribute("datetime")); });
  }
  setInterval(function () { refreshTimes(); }, 30000);
  function stateBadge(s) { return '<span class="badge s-' + s + '">' + esc(s.replace("_", " ")) + "</span>"; }

  // -- fetching --------------------------------------------------------------------------
  function toLogin() {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }
  function request(url, accept) {
    return fetch(url, { headers: { Accept: accept }, credentials: "same-origin" }).then(function (r) {
      if (r.status === 401) { toLogin(); throw new Error("signed out"); }
      if (!r.ok) throw new Error("HTTP " + r.status);
      return accept === "application/json" ? r.json() : r.text();
    });
  }
  function getJSON(url) { return request(url, "application/json"); }
  function getHTML(url) { return request(url, "text/html"); }

  var live = $("#live");
  function setLive(ok, title) {
    if (!live) return;
    live.className = "live " + (ok ? "on" : "off");
    live.textContent = ok ? "live" : "reconnecting…";
    if (title) live.title = title;
  }

  /** Call fn every `ms` while the tab is visible; fn returns a promise. */
  function poll(fn, ms) {
    var timer = null, busy = false;
    function tick() {
      if (document.hidden || busy) return schedule();
      busy = true;
      Promise.resolve().then(fn).then(function () { setLive(true); }, function (e) {
        if (String(e && e.message) !== "signed out") setLive(false, String(e));
      }).then(function () { busy = false; schedule(); });
    }
    function schedule() { clearTimeout(timer); timer = setTimeout(tick, typeof ms === "function" ? ms() : ms); }
    document.addEventListener("visibilitychange", function () { if (!document.hidden) tick(); });
    schedule();
    return tick;
  }

  // -- server fragments for filters, sorting and paging -----------------------------------
  function withPartial(url) {
    var u = new URL(url, location.href);
    u.searchParams.set("partial", "1");
    return u.toString();
  }
  function formURL(form) {
    var u = new URL(form.getAttribute("action"), location.href);
    new FormData(form).forEach(function (v, k) { if (v !== "") u.searchParams.set(k, v); });
    return u;
  }
  function swap(target, url, push) {
    return getHTML(withPartial(url)).then(function (html) {
      target.innerHTML = html;
      refreshTimes(target);
      if (push) history.replaceState(null, "", url.toString());
      target.dispatchEvent(new CustomEvent("swapped", { bubbles: true }));
    });
  }
  $$("form[data-partial-target]").forEach(function (form) {
    var target = $(form.getAttribute("data-partial-target"));
    var timer = null;
    function go() {
      var hidden = form.querySelector('input[name="page"]');
      if (hidden) hidden.value = "1";
      swap(target, formURL(form), true).catch(function () { form.submit(); });
    }
    form.addEventListener("change", go);
    form.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(go, 300); });
    form.addEventListener("submit", function (e) { e.preventDefault(); go(); });
    target.addEventListener("click", function (e) {
      var a = e.target.closest("a[data-partial]");
      if (!a || e.metaKey || e.ctrlKey) return;
      e.preventDefault();
      var u = new URL(a.href);
      ["sort", "dir"].forEach(function (k) {
        var input = form.querySelector('input[name="' + k + '"]');
        if (input && u.searchParams.get(k)) input.value = u.searchParams.get(k);
      });
      swap(target, u, true).catch(function () { location.href = a.href; });
    });
    form._refresh = function () { return swap(target, new URL(location.href), false); };
  });

  // -- experiments list -------------------------------------------------------------------
  if (document.body.dataset.page === "experiments") {
    var cursor = Number(live && live.dataset.cursor || 0);
    var form = $("#exp-filters");
    poll(function () {
      return getJSON("/live").then(function (r) {
        if (r.cursor !== cursor) { cursor = r.cursor; return form._refresh(); }
      });
    }, 4000);
  }

  // -- jobs -------------------------------------------------------------------------------
  if (document.body.dataset.page === "jobs") {
    poll(function () { return swap($("#jobs-body"), new URL(location.href), false); }, 5000);
  }

  // -- charts -----------------------------------------------------------------------------
  function axis(title, extra) {
    return Object.assign({
      title: { text: title, font: { size: 12, color: C.muted } }, gridcolor: C.grid,
      zerolinecolor: C.grid, linecolor: "#d1d5db", tickfont: { size: 11, color: C.muted },
      automargin: true,
    }, extra || {});
  }
  function baseLayout(extra) {
    return Object.assign({
      font: { family: FONT, size: 12, color: C.ink }, paper_bgcolor: "rgba(0,0,0,0)",
      plot_bgcolor: "rgba(0,0,0,0)", margin: { l: 56, r: 16, t: 12, b: 44 }, hovermode: "closest",
      hoverlabel: { font: { family: FONT, size: 12 }, bgcolor: "white" },
      legend: { traceorder: "normal", orientation: "h", x: 0, y: 1.02, yanchor: "bottom", font: { size: 11, color: C.muted } },
    }, extra || {});
  }
  function draw(el, fig) {
    var sk = el.querySelector(".skeleton, .state-card");
    if (sk) sk.remove();
    var layout = Object.assign({}, fig.layout, { autosize: true });
    var narrow = el.clientWidth && el.clientWidth < 560;
    if (narrow && layout.grid && layout.grid.columns > 2) {
      // small multiples: two per row on a phone
      var n = layout.grid.rows * layout.grid.columns;
      var cols = 2, rows = Math.ceil(n / cols);
      var used = fig.data.reduce(function (m, t) { return Math.max(m, Number((t.xaxis || "x").slice(1) || 1)); }, 1);
      rows = Math.ceil(used / cols);
      layout.grid = Object.assign({}, layout.grid, { columns: cols, rows: rows });
      layout.height = 230 * rows;
    }
    if (narrow && layout.legend) layout.legend = Object.assign({}, layout.legend, { font: { size: 10, color: C.muted } });
    var data = fig.data;
    var par = data.length === 1 && data[0].type === "parcoords" ? data[0] : null;
    if (par && el.clientWidth && el.clientWidth / par.dimensions.length < 90) {
      // crowded parallel coordinates (a phone, many axes): slanted axis titles with room
      // above them, and the axes get the colour bar's width (the card says what colour means)
      data = [Object.assign({}, par, {
        labelangle: -45, labelside: "top", line: Object.assign({}, par.line, { showscale: false }),
      })];
      layout.margin = Object.assign({}, layout.margin, { t: 104, l: 40, r: 64 });
    }
    return Plotly.react(el, data, layout, PLOT_CONFIG);
  }
  function stateCard(el, kind, title, message) {
    if (window.Plotly && el.classList.contains("js-plotly-plot")) Plotly.purge(el);
    el.innerHTML = '<div class="state-card ' + kind + '"><h3>' + esc(title) + "</h3><p>" +
      esc(message) + "</p></div>";
  }

  // -- experiment page --------------------------------------------------------------------
  if (document.body.dataset.page === "experiment") experimentPage(JSON.parse($("#page-data").textContent));

  function experimentPage(page) {
    var meta = page.experiment;
    var trials = new Map();
    page.trials.forEach(function (t) { trials.set(t.id, t); });
    var cursor = page.cursor, known = page.known || [];
    var completedSeen = null;

    // Charts built on the server (dashboards/charts.py, the builders assay.plots returns):
    // the first draw comes with the page data (no request), live updates fetch
    // /experiments/{id}/{name}; each answer is {figure, empty, note}. Requests may answer out
    // of order: a chart older than the one drawn is dropped.
    function serverChart(name, el, noteEl, onDrawn) {
      var asked = 0, drawn = 0;
      function show(chart) {
        if (!el || !chart) return null;
        if (noteEl) noteEl.textContent = chart.note || "";
        if (chart.figure) {
          var done = draw(el, chart.figure);
          if (onDrawn) onDrawn();
          return done;
        }
        if (chart.empty) stateCard(el, "", chart.empty.title, chart.empty.message);
        return null;
      }
      function latest(seq, chart) {
        if (seq < drawn) return null;
        drawn = seq;
        return show(chart);
      }
      return {
        next: function () { return ++asked; },
        latest: latest,
        load: function () {
          if (!el) return Promise.resolve(null);
          var seq = ++asked;
          return getJSON("/experiments/" + meta.id + "/" + name).then(function (r) { return latest(seq, r); });
        },
      };
    }
    var traceEl = $("#chart-trace"), clickBound = false;
    // Optimization trace (charts.trace_figure): /trace, and /model-trace with the model layer.
    var trace = serverChart("trace", traceEl, $("#trace-note"), function () {
      if (!clickBound && traceEl.on) {  // a point opens its trial (customdata[0]: its id)
        clickBound = true;
        traceEl.on("plotly_click", function (ev) {
          var cd = ev.points && ev.points[0] && ev.points[0].customdata;
          if (cd && cd[0]) location.href = "/trials/" + cd[0];
        });
      }
    });
    // Parallel coordinates of one objective (charts.parcoords_figure); with several
    // objectives the "parcoords" panel draws them instead, with its "Colour by" control.
    var parallel = serverChart("parallel", $("#chart-parallel"), $("#parallel-note"));
    if (traceEl) {
      // performance marks: benchmarks read them. The trace first, painted before the parallel
      // coordinates start: parcoords is WebGL, and without a GPU (headless, software GL on
      // busy cores) it took 8-9 s of the 2,000-trial page where the trace took < 1 s.
      Promise.resolve(trace.latest(0, page.trace)).then(function () {
        performance.mark("assay:trace");
        return new Promise(function (done) { requestAnimationFrame(function () { setTimeout(done, 0); }); });
      }).then(function () {
        return parallel.latest(0, page.parallel);
      }).then(function () {
        performance.mark("assay:charts");
      });
    }

    // The model: recommendation KPI, the trace's model layer, and the analysis panels.
    function loadModelTrace() {
      var seq = trace.next();
      return getJSON("/experiments/" + meta.id + "/model-trace").then(function (r) {
        var kv = $("#kpi-model"), ks = $("#kpi-model-sub");
        if (r.trace) {
          var rec = r.trace.recommended;
          if (rec) {
            kv.innerHTML = esc(fmt(rec.mean)) + ' <span class="unit">[' + esc(fmt(rec.lower)) + ", " + esc(fmt(rec.upper)) + "]</span>";
            ks.innerHTML = 'arm <a href="/trials/' + rec.trial_ids[rec.trial_ids.length - 1] + '">' + esc(rec.arm_name) + "</a> · P(feasible) " + Math.round(100 * rec.probability_feasible) + "%" +
              (rec.feasible ? "" : ' · <span class="notok">not confidently feasible</span>');
          }
        } else if (r.empty) {
          kv.textContent = "—";
          ks.textContent = r.empty.message.charAt(0).toUpperCase() + r.empty.message.slice(1) + ".";
        } else {
          kv.textContent = "—"; ks.textContent = "model unavailable: " + (r.error ? r.error.message : "");
        }
        trace.latest(seq, r.chart);
      });
    }
    function loadPanel(el) {
      var params = new URLSearchParams();
      $$("select", el).forEach(function (s) { params.set(s.name, s.value); });
      var chart = $("[data-panel-chart]", el);
      if (chart.classList.contains("js-plotly-plot")) chart.style.opacity = "0.55";
      return getJSON("/experiments/" + meta.id + "/panels/" + el.dataset.panel + "?" + params).then(function (r) {
        chart.style.opacity = "";
        if (r.figure) draw(chart, r.figure);
        else if (r.empty) stateCard(chart, "", r.empty.title, r.empty.message);
        else if (r.error) stateCard(chart, "error", r.error.title, r.error.message);
        $("[data-panel-facts]", el).innerHTML = (r.facts || []).map(function (f) { return "<span>" + esc(f.label) + " <b>" + esc(f.value) + "</b></span>"; }).join("");
        $("[data-panel-notes]", el).innerHTML = (r.notes || []).map(function (n) { return "<li>" + esc(n) + "</li>"; }).join("");
        el.dataset.loaded = "1";
      }, function (e) {
        chart.style.opacity = "";
        if (String(e.message) !== "signed out") stateCard(chart, "error", "Could not load this panel", String(e.message) + " — it retries with the next update.");
      });
    }
    function loadModel() {
      // One fit serves everything: the trace layer first, then the panels one by one.
      return loadModelTrace().catch(function () {}).then(function () {
        return $$(".panel").reduce(function (p, el) { return p.then(function () { return loadPanel(el); }); }, Promise.resolve());
      });
    }
    $$(".panel").forEach(function (el) {
      el.addEventListener("change", function () { loadPanel(el); });
    });
    var modelTimer = null, modelBusy = null;
    function scheduleModel() {
      clearTimeout(modelTimer);
      modelTimer = setTimeout(function () {
        if (modelBusy) return scheduleModel();
        modelBusy = loadModel().then(function () { modelBusy = null; performance.mark("assay:model"); });
      }, 5000);
    }
    modelBusy = loadModel().then(function () { modelBusy = null; performance.mark("assay:model"); });

    // Live updates.
    var tableForm = $("#trial-filters"), tableTimer = null;
    function refreshTable(changed) {
      clearTimeout(tableTimer);
      tableTimer = setTimeout(function () {
        tableForm._refresh().then(function () {
          changed.forEach(function (id) {
            var tr = $('#trials tr[data-trial="' + id + '"]');
            if (tr) tr.classList.add("flash");
          });
        });
      }, 250);
    }
    function updateKpis(r) {
      var total = 0, states = ["candidate", "running", "completed", "failed", "abandoned", "early_stopped"];
      states.forEach(function (s) { total += r.counts[s] || 0; });
      $("#kpi-total").textContent = total;
      $("#kpi-states").innerHTML = '<div class="statebar">' + states.filter(function (s) { return r.counts[s]; }).map(function (s) {
        return '<span class="bg-' + s + '" style="width:' + (100 * r.counts[s] / total) + '%"></span>';
      }).join("") + '</div><div class="legend">' + states.filter(function (s) { return r.counts[s]; }).map(function (s) {
        return '<span><i class="bg-' + s + '"></i>' + r.counts[s] + " " + s.replace("_", " ") + "</span>";
      }).join("") + "</div>";
      if (r.best) {
        $("#kpi-best").innerHTML = esc(fmt(r.best.value)) + (r.best.sem !== null ? ' <span class="unit">± ' + esc(fmt(r.best.sem, 2)) + "</span>" : "");
        $("#kpi-best-sub").innerHTML = 'trial <a href="/trials/' + r.best.trial_id + '">#' + r.best.trial_index + "</a>" + (r.best.feasible ? "" : ' · <span class="notok">no trial meets the constraints yet</span>');
      }
    }
    function addToFeed(events) {
      var feed = $("#feed");
      var empty = $("#feed-empty");
      if (empty && events.length) empty.remove();
      events.forEach(function (e) {
        var li = document.createElement("li");
        li.className = "new";
        li.innerHTML = stateBadge(e.to) + '<span><a href="/trials/' + e.trial_id + '">trial #' + (e.trial_index === null ? "?" : e.trial_index) + "</a>" +
          (e.actor ? ' <span class="muted small">' + esc(e.actor) + "</span>" : "") + '</span><span class="when"><time data-ago datetime="' + esc(e.at) + '">' + ago(e.at) + "</time></span>";
        feed.insertBefore(li, feed.firstChild);
      });
      while (feed.children.length > 10) feed.removeChild(feed.lastChild);
    }
    poll(function () {
      return getJSON("/experiments/" + meta.id + "/live?after=" + cursor + "&known=" + known.join(",")).then(function (r) {
        cursor = r.cursor; known = r.known;
        if (!r.events.length) return;
        r.trials.forEach(function (t) { trials.set(t.id, t); });
        updateKpis(r);
        addToFeed(r.events);
        trace.load().catch(function () {});
        parallel.load().catch(function () {});
        refreshTable(r.trials.map(function (t) { return t.id; }));
        if (completedSeen !== null && r.completed !== completedSeen) scheduleModel();
        completedSeen = r.completed;
        document.dispatchEvent(new CustomEvent("assay:live", { detail: r }));
      });
    }, 2000);
    completedSeen = 0;
    trials.forEach(function (t) { if (t.s === "completed") completedSeen += 1; });
    window.assayPage = { trials: trials, reloadModel: loadModel };
  }

  // -- trial page -------------------------------------------------------------------------
  if (document.body.dataset.page === "trial") trialPage(JSON.parse($("#page-data").textContent));

  function trialPage(page) {
    var body = $("#trial-body"), cursor = page.cursor;
    function curves(list) {
      var el = $("#chart-curves");
      if (!el || !list || !list.length) return;
      draw(el, {
        data: list.map(function (c, k) {
          return { type: "scatter", mode: "lines+markers", name: c.metric, x: c.steps, y: c.values,
            line: { width: 2, color: [C.accent, "#0891b2", "#db2777", "#65a30d"][k % 4] }, marker: { size: 4 } };
        }),
        layout: baseLayout({ height: 300, xaxis: axis("step"), yaxis: axis("") }),
      });
    }
    curves(page.curves);
    function terminal() { return ["candidate", "running"].indexOf(body.dataset.state) < 0; }
    poll(function () {
      return getJSON("/trials/" + page.trial + "/live?after=" + cursor).then(function (r) {
        cursor = r.cursor;
        var pre = $("#log-tail");
        if (r.log_tail && pre) pre.textContent = r.log_tail;
        if (r.changed || (r.log_tail && !pre)) {
          body.dataset.state = r.state;
          return getHTML(withPartial(location.href)).then(function (html) {
            body.innerHTML = html; refreshTimes(body); curves(r.curves);
          });
        }
        curves(r.curves);
      });
    }, function () { return terminal() ? 15000 : 2500; });
  }
})();
