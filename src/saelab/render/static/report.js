// saelab report: the latent table of a dictionary page (sort, filter, paginate).
// Data come from a <script> that sets window.SAELAB_TABLE (fetch() of file:// is blocked).
// Every value is written with textContent: nothing from the data is parsed as HTML.
"use strict";

function saelabTable(data) {
  var PAGE = 100;
  var cols = data.columns;
  var ci = {};
  cols.forEach(function (c, i) { ci[c] = i; });
  var shown = cols.filter(function (c) { return c !== "page"; });
  var state = { q: "", sort: "latent", desc: false, page: 0 };
  var rows = data.rows, view = rows;

  function readHash() {
    var h = new URLSearchParams(location.hash.replace(/^#/, ""));
    state.q = h.get("q") || "";
    state.sort = ci.hasOwnProperty(h.get("sort")) ? h.get("sort") : "latent";
    state.desc = h.get("desc") === "1";
    state.page = 0;
    document.getElementById("q").value = state.q;
  }

  function cmp(a, b) {
    var i = ci[state.sort], x = a[i], y = b[i];
    if (state.sort === "partner") { x = x && x[2]; y = y && y[2]; }
    if (x === null || x === undefined) return (y === null || y === undefined) ? a[0] - b[0] : 1;
    if (y === null || y === undefined) return -1;
    var r = typeof x === "string" ? x.localeCompare(y) : x - y;
    if (r === 0) return a[0] - b[0];
    return state.desc ? -r : r;
  }

  function apply() {
    var q = state.q.trim().toLowerCase();
    var ie = ci.explanation;
    if (q === "") view = rows.slice();
    else if (/^\d+$/.test(q)) view = rows.filter(function (r) { return r[0] === +q; });
    else view = rows.filter(function (r) { return r[ie] && r[ie].toLowerCase().indexOf(q) >= 0; });
    view.sort(cmp);
    render();
  }

  function link(href, text) {
    var a = document.createElement("a");
    a.href = href;
    a.textContent = text;
    return a;
  }

  function cell(col, r) {
    var td = document.createElement("td"), v = r[ci[col]];
    if (col === "latent") {
      td.appendChild(r[ci.page] ? link("latents/" + v + ".html", String(v)) : document.createTextNode(String(v)));
    } else if (col === "partner") {
      if (v) {
        var href = v[3] ? "../" + encodeURIComponent(v[0]) + "/latents/" + v[1] + ".html"
                        : "../" + encodeURIComponent(v[0]) + "/index.html#q=" + v[1];
        td.appendChild(link(href, v[0] + " #" + v[1]));
        td.appendChild(document.createTextNode(" (" + v[2].toFixed(2) + ")"));
      } else td.textContent = "–";
    } else if (v === null || v === undefined) {
      td.textContent = "–";
    } else if (typeof v === "number") {
      td.className = "n";
      td.textContent = col === "frequency" ? (100 * v).toPrecision(3) + "%" : String(v);
    } else {
      td.className = "text";
      td.textContent = v;
    }
    return td;
  }

  function render() {
    var head = document.getElementById("latent-head");
    head.textContent = "";
    shown.forEach(function (c) {
      var th = document.createElement("th");
      th.textContent = c + (state.sort === c ? (state.desc ? " ▼" : " ▲") : "");
      th.dataset.col = c;
      th.addEventListener("click", function () {
        state.desc = state.sort === c ? !state.desc : c !== "latent";
        state.sort = c;
        state.page = 0;
        apply();
      });
      head.appendChild(th);
    });
    var body = document.getElementById("latent-body");
    body.textContent = "";
    var n = Math.max(1, Math.ceil(view.length / PAGE));
    state.page = Math.min(state.page, n - 1);
    view.slice(state.page * PAGE, (state.page + 1) * PAGE).forEach(function (r) {
      var tr = document.createElement("tr");
      shown.forEach(function (c) { tr.appendChild(cell(c, r)); });
      body.appendChild(tr);
    });
    document.getElementById("count").textContent = view.length + " of " + rows.length + " latents";
    document.getElementById("pageinfo").textContent = "page " + (state.page + 1) + " of " + n;
  }

  document.getElementById("q").addEventListener("input", function (e) {
    state.q = e.target.value;
    state.page = 0;
    apply();
  });
  document.getElementById("prev").addEventListener("click", function () { state.page = Math.max(0, state.page - 1); render(); });
  document.getElementById("next").addEventListener("click", function () { state.page += 1; render(); });
  window.addEventListener("hashchange", function () { readHash(); apply(); });
  readHash();
  apply();
}
