// hubswarm hub page: sort, search, upload with progress, delete, copy sha256, live stats.
// Loaded from /static/ (the page's Content-Security-Policy allows no inline script). Names are
// only ever inserted with textContent, never as HTML.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const csrfMeta = $("#csrf");
  const csrf = csrfMeta ? csrfMeta.getAttribute("content") : "";
  const table = $("#listing");

  function quotePath(path) {
    return path.split("/").map(encodeURIComponent).join("/");
  }

  function humanSize(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i === 0 ? n + " B" : n.toFixed(1) + " " + units[i];
  }

  // --- sort and search --------------------------------------------------------------------
  let sortKey = "name", sortDir = 1;

  function sortRows() {
    const body = table.tBodies[0];
    const rows = $$("tr", body);
    rows.sort((a, b) => {
      // Folders first, as every file manager does.
      const fa = a.classList.contains("folder"), fb = b.classList.contains("folder");
      if (fa !== fb) return fa ? -1 : 1;
      const va = a.dataset[sortKey], vb = b.dataset[sortKey];
      const cmp = sortKey === "name"
        ? va.localeCompare(vb, undefined, { numeric: true, sensitivity: "base" })
        : Number(va) - Number(vb);
      return cmp * sortDir;
    });
    rows.forEach((r) => body.appendChild(r));
    $$("th[data-sort]", table).forEach((th) => {
      if (th.dataset.sort === sortKey) {
        th.setAttribute("aria-sort", sortDir > 0 ? "ascending" : "descending");
      } else {
        th.removeAttribute("aria-sort");
      }
    });
  }

  function bindSort() {
    $$("th[data-sort]", table).forEach((th) => {
      th.addEventListener("click", () => {
        sortDir = th.dataset.sort === sortKey ? -sortDir : 1;
        sortKey = th.dataset.sort;
        sortRows();
      });
    });
  }

  function applySearch() {
    const q = $("#search").value.trim().toLowerCase();
    $$("tbody tr", table).forEach((tr) => {
      tr.hidden = q !== "" && !tr.dataset.name.toLowerCase().includes(q);
    });
  }

  // --- row actions ------------------------------------------------------------------------
  function bindRows(root) {
    $$("button.delete", root).forEach((b) => b.addEventListener("click", onDelete));
    $$("button.copy", root).forEach((b) => b.addEventListener("click", onCopy));
  }

  async function onDelete(ev) {
    const b = ev.currentTarget;
    if (!b.classList.contains("armed")) {
      // Two clicks instead of a dialog: the first arms the button for a few seconds.
      b.classList.add("armed");
      b.textContent = "confirm delete";
      setTimeout(() => { b.classList.remove("armed"); b.textContent = "delete"; }, 4000);
      return;
    }
    b.disabled = true;
    const resp = await fetch("/files/" + quotePath(b.dataset.path.replace(/\/$/, "")) +
      (b.dataset.path.endsWith("/") ? "/" : ""), {
      method: "DELETE", headers: { "X-CSRF-Token": csrf }, credentials: "same-origin",
    });
    if (resp.status === 204) {
      b.closest("tr").remove();
    } else {
      b.disabled = false;
      let msg = resp.status + "";
      try { msg = (await resp.json()).error; } catch (e) { /* not JSON */ }
      b.textContent = "failed: " + msg;
    }
  }

  async function onCopy(ev) {
    const b = ev.currentTarget;
    try {
      await navigator.clipboard.writeText(b.dataset.sha);
      b.textContent = "copied";
    } catch (e) {
      // No clipboard (plain http from another host): select the digest for Ctrl+C instead.
      const code = b.parentElement.querySelector("code");
      code.textContent = b.dataset.sha;
      window.getSelection().selectAllChildren(code);
      b.textContent = "selected";
    }
  }

  // --- upload -----------------------------------------------------------------------------
  const queue = [];
  let busy = false;

  function addUploads(items) {
    const list = $("#uploads");
    const base = $("#drop").dataset.folder;
    for (const { file, path } of items) {
      const li = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = path;
      const bar = document.createElement("progress");
      bar.max = file.size || 1;
      bar.value = 0;
      const state = document.createElement("span");
      state.className = "state";
      state.textContent = "queued";
      li.append(label, bar, state);
      list.appendChild(li);
      queue.push({ file, target: (base ? base + "/" : "") + path, bar, state, li });
    }
    if (!busy) runQueue();
  }

  function put(job) {
    return new Promise((resolve) => {
      const xhr = new XMLHttpRequest();
      xhr.open("PUT", "/files/" + quotePath(job.target));
      xhr.setRequestHeader("X-CSRF-Token", csrf);
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable) {
          job.bar.max = e.total || 1;
          job.bar.value = e.loaded;
          job.state.textContent = Math.floor((100 * e.loaded) / (e.total || 1)) + "%";
        }
      });
      xhr.addEventListener("load", () => {
        const ok = xhr.status === 200 || xhr.status === 201;
        job.bar.value = job.bar.max;
        job.state.textContent = ok ? "done" : "failed " + xhr.status;
        job.state.className = "state " + (ok ? "done" : "failed");
        job.li.dataset.result = ok ? "done" : "failed";
        resolve();
      });
      xhr.addEventListener("error", () => {
        job.state.textContent = "failed";
        job.state.className = "state failed";
        job.li.dataset.result = "failed";
        resolve();
      });
      job.state.textContent = "0%";
      xhr.send(job.file);
    });
  }

  async function runQueue() {
    busy = true;
    while (queue.length) await put(queue.shift());
    busy = false;
    await refreshListing();
    document.body.dataset.uploads = "idle";
  }

  async function refreshListing() {
    const resp = await fetch(location.pathname, {
      headers: { Accept: "text/html" }, credentials: "same-origin",
    });
    if (!resp.ok) return;
    const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
    const fresh = doc.querySelector("#listing tbody");
    if (!fresh) return;
    table.tBodies[0].replaceWith(document.adoptNode(fresh));
    const summary = doc.querySelector(".summary");
    if (summary) $(".summary").textContent = summary.textContent;
    const empty = $(".empty");
    if (empty) empty.remove();
    bindRows(table);
    sortRows();
    applySearch();
  }

  function fromInput(input) {
    const items = Array.from(input.files).map((file) => ({
      file, path: file.webkitRelativePath || file.name,
    }));
    input.value = "";
    addUploads(items);
  }

  // Folders dropped on the page: walk them with the File System entries API.
  function readEntry(entry, prefix, out) {
    return new Promise((resolve) => {
      if (entry.isFile) {
        entry.file((file) => { out.push({ file, path: prefix + entry.name }); resolve(); },
          () => resolve());
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        const all = [];
        const next = () => reader.readEntries(async (batch) => {
          if (!batch.length) {
            for (const e of all) await readEntry(e, prefix + entry.name + "/", out);
            resolve();
          } else { all.push(...batch); next(); }
        }, () => resolve());
        next();
      } else resolve();
    });
  }

  function bindUpload() {
    const drop = $("#drop");
    if (!drop) return;
    $("#pick-files").addEventListener("change", (e) => fromInput(e.target));
    $("#pick-folder").addEventListener("change", (e) => fromInput(e.target));
    document.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    document.addEventListener("dragleave", () => drop.classList.remove("over"));
    document.addEventListener("drop", async (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const out = [];
      const entries = Array.from(e.dataTransfer.items || [])
        .map((i) => (i.webkitGetAsEntry ? i.webkitGetAsEntry() : null)).filter(Boolean);
      if (entries.length) {
        for (const entry of entries) await readEntry(entry, "", out);
      } else {
        for (const file of e.dataTransfer.files) out.push({ file, path: file.name });
      }
      addUploads(out);
    });
  }

  // --- live stats (Server-Sent Events) ----------------------------------------------------
  const samples = []; // [t, bytes/s out, bytes/s in]
  const KEEP = 180; // three minutes at one event a second
  let last = null;

  function draw() {
    const canvas = $("#chart");
    if (!canvas || !canvas.getContext) return;
    const w = (canvas.width = canvas.clientWidth || 600);
    const h = (canvas.height = 120);
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, w, h);
    const style = getComputedStyle(document.documentElement);
    const peak = Math.max(1, ...samples.map((s) => Math.max(s[1], s[2])));
    [[1, style.getPropertyValue("--bar")], [2, style.getPropertyValue("--ok")]].forEach(
      ([k, color]) => {
        ctx.strokeStyle = color.trim() || "#2f6fdf";
        ctx.lineWidth = 2;
        ctx.beginPath();
        samples.forEach((s, i) => {
          const x = w - ((samples.length - 1 - i) / (KEEP - 1)) * w;  // newest at the right
          const y = h - 4 - (s[k] / peak) * (h - 8);
          if (i === 0) ctx.moveTo(x, y); else ctx.lineTo(x, y);
        });
        ctx.stroke();
      });
  }

  function onEvent(ev) {
    const d = JSON.parse(ev.data);
    if (last && d.t > last.t) {
      const dt = d.t - last.t;
      samples.push([d.t, (d.sent - last.sent) / dt, (d.received - last.received) / dt]);
      while (samples.length > KEEP) samples.shift();
      const s = samples[samples.length - 1];
      $("#rate").textContent = "out " + humanSize(Math.round(s[1])) + "/s, in " +
        humanSize(Math.round(s[2])) + "/s";
    }
    last = d;
    $("#active").textContent = String(d.active);
    $("#swarms").textContent = String(d.swarms);
    const top = $("#top-downloads");
    top.replaceChildren(...Object.entries(d.downloads).map(([name, n]) => {
      const li = document.createElement("li");
      li.textContent = name + " — " + n + (n === 1 ? " download" : " downloads");
      return li;
    }));
    $$("td.swarm").forEach((td) => {
      const n = d.downloads[td.dataset.swarm];
      const span = td.querySelector(".downloads");
      if (span && n !== undefined) span.textContent = n + (n === 1 ? " download" : " downloads");
    });
    draw();
  }

  function bindLive() {
    const live = $("#live");
    if (!live || !window.EventSource) return;
    let source = null;
    live.addEventListener("toggle", () => {
      if (live.open && !source) {
        source = new EventSource("/events");
        source.addEventListener("message", onEvent);
      } else if (!live.open && source) {
        source.close();
        source = null;
      }
    });
  }

  if (table) {
    bindSort();
    bindRows(document);
    $("#search").addEventListener("input", applySearch);
    bindUpload();
    bindLive();
    document.body.dataset.ready = "1";
  }
})();
